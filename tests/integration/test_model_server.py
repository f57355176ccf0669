"""The embedded model server speaks Ollama's API to the official `ollama` client."""

from __future__ import annotations

import json
import math
import shutil

import httpx
import ollama
import pytest

from runtime.model_server.engine import CHAT_MODEL, EMBED_MODEL, smollm2_path
from runtime.servers.model import ModelServer
from runtime.settings import Settings
from runtime.stack import Stack
from tests.servers import isolated_settings, scratch_dir


@pytest.fixture
def client(stack: Stack) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=stack.model_url, timeout=120)


async def test_it_lists_its_models_and_version(client: ollama.AsyncClient, stack: Stack) -> None:
    names = {m.model for m in (await client.list()).models}
    assert names == {CHAT_MODEL, EMBED_MODEL}
    async with httpx.AsyncClient() as http:
        version = (await http.get(f"{stack.model_url}/api/version")).json()
    assert version["version"]


async def test_chat_streams_tokens_then_counts(client: ollama.AsyncClient) -> None:
    parts = [
        part
        async for part in await client.chat(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
            options={"num_predict": 12, "temperature": 0, "seed": 7},
        )
    ]
    assert len(parts) >= 2
    assert not any(p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done
    assert last.done_reason in {"stop", "length"}
    assert last.eval_count == len(parts) - 1
    assert 0 < last.eval_count <= 12
    assert (last.prompt_eval_count or 0) > 0
    assert "".join(p.message.content or "" for p in parts).strip()


async def test_a_json_schema_format_constrains_the_output(client: ollama.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["steps"],
    }
    answer = await client.chat(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "List the steps to make tea as JSON."}],
        format=schema,
        options={"num_predict": 120, "temperature": 0},
    )
    parsed = json.loads(answer.message.content or "")
    assert isinstance(parsed["steps"], list)


async def test_generate_answers_without_streaming(client: ollama.AsyncClient) -> None:
    answer = await client.generate(
        model=CHAT_MODEL, prompt="2+2=", options={"num_predict": 4, "temperature": 0}
    )
    assert answer.done
    assert answer.response is not None


async def test_embeddings_rank_related_text_higher(client: ollama.AsyncClient) -> None:
    texts = ["The cat sat on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply."]
    vectors = (await client.embed(model=EMBED_MODEL, input=texts)).embeddings
    assert [len(v) for v in vectors] == [384, 384, 384]

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    cat, kitten, stocks = (list(v) for v in vectors)
    assert cosine(cat, kitten) > cosine(cat, stocks)


async def test_an_unknown_model_is_a_typed_404(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        await client.chat(model="llama9:999b", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 404


async def test_the_model_path_setting_serves_that_gguf_under_the_chat_model_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = scratch_dir()
    # A copy under a name of its own: the server can only have found it through the setting.
    mine = root / "my-model.Q4_1.gguf"
    shutil.copyfile(smollm2_path(), mine)
    size = mine.stat().st_size
    monkeypatch.setenv("SUTAZAI_MODEL_PATH", str(mine))
    monkeypatch.setenv("SUTAZAI_CHAT_MODEL", "mine:q4")
    settings: Settings = isolated_settings(root)
    assert settings.model_path == mine
    server = Stack(settings).embedded("model")
    assert isinstance(server, ModelServer)
    await server.start()
    try:
        client = ollama.AsyncClient(host=server.url, timeout=120)
        listed = {m.model: m for m in (await client.list()).models}
        answer = await client.chat(
            model="mine:q4",
            messages=[{"role": "user", "content": "Say hello."}],
            options={"num_predict": 12, "temperature": 0, "seed": 7},
        )
        with pytest.raises(ollama.ResponseError) as refused:
            await client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)

    assert set(listed) == {"mine:q4", EMBED_MODEL}
    details = listed["mine:q4"]
    assert details.digest == "my-model.q4_1"
    assert details.size == size
    assert details.details is not None
    assert details.details.quantization_level == "Q4_1"
    assert details.details.family == "llama"  # from the file's GGUF metadata
    assert (answer.message.content or "").strip()
    assert refused.value.status_code == 404
