"""The model server: our Ollama-compatible process (embedded), or a real Ollama (external)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

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
    """`python -m runtime.model_server`: SmolLM2 and MiniLM behind the Ollama API."""

    name = "model"

    def __init__(self, options: ServerOptions, *, port: int, threads: int = 1) -> None:
        super().__init__(options, port=port)
        self.threads = threads
        # Importing torch and loading two models takes a while on a busy machine.
        self.startup_timeout = max(self.startup_timeout, 180.0)

    @property
    def url(self) -> str:
        """The Ollama host URL."""
        return f"http://{LOOPBACK}:{self.port}"

    def argv(self) -> Sequence[str]:
        """This interpreter, running the server module in the foreground."""
        return [
            sys.executable, "-m", "runtime.model_server",
            "--port", str(self.port),
            "--threads", str(self.threads),
        ]  # fmt: skip

    async def check(self) -> None:
        """`/api/version` answers."""
        await model_probe(self.url)()
