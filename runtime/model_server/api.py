"""The Ollama HTTP API, as much of it as agents use: chat, generate, embed, tags, version.

Shapes follow Ollama's own (streaming NDJSON by default, durations in nanoseconds), so the
official `ollama` client talks to this server unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runtime.model_server.engine import EMBED_MODEL, Models, Piece, Sampling

VERSION = "0.6.3-sutazai"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _quantization(path: Path) -> str:
    """The quantization a GGUF file's name announces (`...-Q4_K_M.gguf`), as Ollama shows it."""
    found = re.search(r"(?i)(?:^|[-_.])((?:I?Q\d[\w]*)|F16|BF16|F32)$", path.stem)
    return found.group(1).upper() if found else ""


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _pieces(
    models: Models, messages: Sequence[Mapping[str, str]], sampling: Sampling
) -> AsyncIterator[Piece]:
    """The generation, token by token, from a worker thread; stops it if the reader leaves."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Piece | BaseException] = asyncio.Queue()
    leaving = threading.Event()

    def generate() -> None:
        pieces = models.chat(messages, sampling)
        try:
            for piece in pieces:
                if leaving.is_set():
                    return
                loop.call_soon_threadsafe(queue.put_nowait, piece)
        except BaseException as error:
            loop.call_soon_threadsafe(queue.put_nowait, error)
        finally:
            pieces.close()  # releases the model for the next request

    worker = loop.run_in_executor(None, generate)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.done:
                break
    finally:
        leaving.set()
        await asyncio.shield(worker)


def _final_counts(piece: Piece, started: float) -> dict[str, Any]:
    total = int((time.perf_counter() - started) * 1e9)
    return {
        "done": True,
        "done_reason": piece.done_reason,
        "total_duration": total,
        "load_duration": 0,
        "prompt_eval_count": piece.prompt_tokens,
        "prompt_eval_duration": 0,
        "eval_count": piece.completion_tokens,
        "eval_duration": total,
    }


async def _read(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the request body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the request body must be a JSON object")
    return body


def _sampling(body: Mapping[str, Any]) -> Sampling | Response:
    try:
        return Sampling.from_request(body.get("options"), body.get("format"))
    except (TypeError, ValueError) as error:
        return _error(400, f"invalid options: {error}")


def build_app(models: Models) -> Starlette:
    """The server's routes over loaded models."""

    async def chat(request: Request) -> Response:
        body = await _read(request)
        if isinstance(body, Response):
            return body
        return await _respond(body, body.get("messages") or [], chat_shape=True)

    async def generate(request: Request) -> Response:
        body = await _read(request)
        if isinstance(body, Response):
            return body
        messages = []
        if body.get("system"):
            messages.append({"role": "system", "content": str(body["system"])})
        messages.append({"role": "user", "content": str(body.get("prompt") or "")})
        return await _respond(body, messages, chat_shape=False)

    async def _respond(
        body: Mapping[str, Any], messages: Sequence[Any], *, chat_shape: bool
    ) -> Response:
        model = body.get("model")
        if model != models.chat_model:
            return _error(404, f"model '{model}' not found, try pulling it first")
        if not all(isinstance(m, Mapping) and "role" in m for m in messages):
            return _error(400, "messages must be objects with a role and content")
        sampling = _sampling(body)
        if isinstance(sampling, Response):
            return sampling
        plain = [{"role": str(m["role"]), "content": str(m.get("content") or "")} for m in messages]
        started = time.perf_counter()

        def frame(text: str) -> dict[str, Any]:
            base: dict[str, Any] = {"model": model, "created_at": _now()}
            if chat_shape:
                base["message"] = {"role": "assistant", "content": text}
            else:
                base["response"] = text
            return base

        if body.get("stream", True):

            async def lines() -> AsyncIterator[bytes]:
                async for piece in _pieces(models, plain, sampling):
                    out = frame(piece.text)
                    out.update(_final_counts(piece, started) if piece.done else {"done": False})
                    yield json.dumps(out).encode() + b"\n"

            return StreamingResponse(lines(), media_type="application/x-ndjson")
        text: list[str] = []
        last: Piece | None = None
        async for piece in _pieces(models, plain, sampling):
            text.append(piece.text)
            last = piece
        assert last is not None
        out = frame("".join(text))
        out.update(_final_counts(last, started))
        return JSONResponse(out)

    async def embed(request: Request) -> Response:
        body = await _read(request)
        if isinstance(body, Response):
            return body
        if body.get("model") != EMBED_MODEL:
            return _error(404, f"model '{body.get('model')}' not found, try pulling it first")
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(400, "input must be a string or a list of strings")
        started = time.perf_counter()
        vectors = await asyncio.to_thread(models.embed, texts)
        return JSONResponse(
            {
                "model": EMBED_MODEL,
                "embeddings": vectors,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": 0,
                "prompt_eval_count": await asyncio.to_thread(models.count_tokens, texts),
            }
        )

    async def tags(_: Request) -> Response:
        modified = _now()
        return JSONResponse(
            {
                "models": [
                    {
                        "name": models.chat_model,
                        "model": models.chat_model,
                        "modified_at": modified,
                        "size": models.chat_model_size,
                        "digest": models.chat_model_path.stem.lower(),
                        "details": {
                            "format": "gguf",
                            "family": models.chat_model_metadata("general.architecture") or "",
                            "parameter_size": models.chat_model_metadata("general.size_label")
                            or "",
                            "quantization_level": _quantization(models.chat_model_path),
                        },
                    },
                    {
                        "name": EMBED_MODEL,
                        "model": EMBED_MODEL,
                        "modified_at": modified,
                        "size": 90_868_376,
                        "digest": "all-minilm-l6-v2",
                        "details": {
                            "format": "safetensors",
                            "family": "bert",
                            "parameter_size": "22M",
                            "quantization_level": "F32",
                        },
                    },
                ]
            }
        )

    async def version(_: Request) -> Response:
        return JSONResponse({"version": VERSION})

    return Starlette(
        routes=[
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"]),
            Route("/api/embed", embed, methods=["POST"]),
            Route("/api/tags", tags, methods=["GET"]),
            Route("/api/version", version, methods=["GET"]),
        ]
    )
