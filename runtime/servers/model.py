"""The model server: our Ollama-compatible process (embedded), or a real Ollama (external)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from runtime.servers.base import EmbeddedServer, ServerOptions
from runtime.servers.process import Probe
from runtime.settings import LOOPBACK


def model_probe(url: str) -> Probe:
    """A probe that asks `/api/version`, as any Ollama answers it."""

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"{url}/api/version")
            response.raise_for_status()

    return probe


class ModelServer(EmbeddedServer):
    """`python -m runtime.model_server`: a GGUF chat model (SmolLM2 unless given a path) and
    MiniLM behind the Ollama API."""

    name = "model"

    def __init__(
        self,
        options: ServerOptions,
        *,
        port: int,
        threads: int = 1,
        chat_model: str | None = None,
        model_path: Path | None = None,
    ) -> None:
        super().__init__(options, port=port)
        self.threads = threads
        self.chat_model = chat_model
        self.model_path = model_path
        # Importing torch and loading two models takes a while on a busy machine.
        self.startup_timeout = max(self.startup_timeout, 180.0)

    @property
    def url(self) -> str:
        """The Ollama host URL."""
        return f"http://{LOOPBACK}:{self.port}"

    def argv(self) -> Sequence[str]:
        """This interpreter, running the server module in the foreground."""
        argv = [
            sys.executable, "-m", "runtime.model_server",
            "--port", str(self.port),
            "--threads", str(self.threads),
        ]  # fmt: skip
        if self.chat_model:
            argv += ["--chat-model", self.chat_model]
        if self.model_path:
            argv += ["--model-path", str(self.model_path)]
        return argv

    async def check(self) -> None:
        """`/api/version` answers."""
        await model_probe(self.url)()
