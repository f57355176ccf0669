"""The server stack: NATS, PostgreSQL, Redis, the graph store and the model server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

from runtime.servers import EmbeddedServer, ExternalServer, Server
from runtime.servers.base import ServerOptions
from runtime.servers.model import ModelServer, model_probe
from runtime.servers.nats import ClusterPlace, NatsServer, nats_probe
from runtime.servers.postgres import PostgresServer, postgres_probe
from runtime.servers.process import Probe
from runtime.servers.redis import GraphServer, RedisServer, graph_probe, redis_probe
from runtime.settings import Settings

log = structlog.get_logger(__name__)

StackProgress = Callable[[str, str], None]
"""Called with (server name, what just happened) while the stack starts or stops."""


@dataclass(frozen=True)
class ServerStatus:
    """What `sutazai status` shows for one server."""

    name: str
    url: str
    embedded: bool
    pid: int | None
    healthy: bool
    error: str | None


def _recorded_pid(root: Path, name: str) -> int | None:
    """The pid an embedded server's run wrote down, if that process still lives."""
    try:
        pid = int((root / "run" / f"{name}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


class Stack:
    """Every server the platform needs, started in parallel and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.resolved_data_dir
        options = ServerOptions(
            root=self.root,
            startup_timeout=settings.startup_timeout,
            stop_timeout=settings.stop_timeout,
        )

        def external_or(
            name: str,
            url: str | None,
            probe: Callable[[str], Probe],
            embedded: Callable[[], Server],
        ) -> Server:
            if url:
                return ExternalServer(name, url, probe, settings.startup_timeout)
            return embedded()

        self._servers: dict[str, Server] = {
            **self._nats(settings, options),
            "postgres": external_or(
                "postgres",
                settings.postgres_url,
                postgres_probe,
                lambda: PostgresServer(
                    options,
                    port=settings.postgres_port,
                    database=settings.postgres_database,
                    data_dir=settings.postgres_data_dir,
                ),
            ),
            "redis": external_or(
                "redis",
                settings.redis_url,
                redis_probe,
                lambda: RedisServer(options, port=settings.redis_port),
            ),
            "graph": external_or(
                "graph",
                settings.graph_url,
                graph_probe,
                lambda: GraphServer(options, port=settings.graph_port),
            ),
            "model": external_or(
                "model",
                settings.ollama_host,
                model_probe,
                lambda: ModelServer(
                    options,
                    port=settings.model_port,
                    threads=settings.model_threads,
                    chat_model=settings.chat_model,
                    model_path=settings.model_path,
                ),
            ),
        }

    @staticmethod
    def _nats(settings: Settings, options: ServerOptions) -> dict[str, Server]:
        """One NATS server, or the nodes of an embedded cluster (`nats-1`, `nats-2`, ...)."""
        if settings.nats_url:
            url, timeout = settings.nats_url, settings.startup_timeout
            return {"nats": ExternalServer("nats", url, nats_probe, timeout)}
        size = settings.nats_cluster
        route_ports = tuple(settings.nats_route_port + i for i in range(size))
        nodes = [
            NatsServer(
                options,
                port=settings.nats_port + i,
                monitor_port=settings.nats_monitor_port + i,
                sync=settings.nats_sync,
                cluster=ClusterPlace(node=i + 1, route_ports=route_ports) if size > 1 else None,
            )
            for i in range(size)
        ]
        return {node.name: node for node in nodes}

    def nats_nodes(self) -> list[NatsServer]:
        """The embedded NATS servers (one, or a cluster's nodes; none for an external NATS)."""
        return [server for server in self if isinstance(server, NatsServer)]

    def __iter__(self) -> Iterator[Server]:
        return iter(self._servers.values())

    def __getitem__(self, name: str) -> Server:
        return self._servers[name]

    def embedded(self, name: str) -> EmbeddedServer:
        """An embedded server by name (for fault tests and the CLI)."""
        server = self._servers[name]
        if not isinstance(server, EmbeddedServer):
            raise LookupError(f"{name} is external ({server.url}); the platform does not run it")
        return server

    @property
    def nats_url(self) -> str:
        """Where NATS answers: every node of a cluster, separated by commas."""
        if "nats" in self._servers:
            return self["nats"].url
        return ",".join(node.url for node in self.nats_nodes())

    @property
    def postgres_url(self) -> str:
        """Where PostgreSQL answers (the application database)."""
        return self["postgres"].url

    @property
    def redis_url(self) -> str:
        """Where Redis answers."""
        return self["redis"].url

    @property
    def graph_url(self) -> str:
        """Where the graph store answers."""
        return self["graph"].url

    @property
    def model_url(self) -> str:
        """Where the Ollama API answers."""
        return self["model"].url

    async def start(self, progress: StackProgress | None = None) -> None:
        """Start every server at once; if one fails, stop the others and raise its error."""
        report = progress or (lambda _name, _what: None)

        async def start_one(server: Server) -> None:
            report(server.name, "starting" if server.embedded else "checking")
            await server.start()
            report(server.name, "healthy")

        starting = [asyncio.create_task(start_one(server)) for server in self]
        try:
            # The first failure ends the wait: the others are cancelled (each stops what it
            # spawned) instead of being waited for.
            for started in asyncio.as_completed(starting):
                await started
        except BaseException:
            for task in starting:
                task.cancel()
            await asyncio.gather(*starting, return_exceptions=True)
            await self.stop()
            raise
        log.info("stack.started", servers={server.name: server.url for server in self})

    async def stop(self, progress: StackProgress | None = None) -> None:
        """Stop every embedded server (external ones are left alone)."""
        report = progress or (lambda _name, _what: None)

        async def stop_one(server: Server) -> None:
            await server.stop()
            report(server.name, "stopped")

        await asyncio.gather(*(stop_one(server) for server in reversed(list(self))))

    async def status(self) -> list[ServerStatus]:
        """Probe every server once, whoever runs it."""

        async def one(server: Server) -> ServerStatus:
            pid = server.pid if server.pid is not None else _recorded_pid(self.root, server.name)
            try:
                await asyncio.wait_for(server.check(), timeout=3)
            except Exception as error:
                return ServerStatus(
                    server.name, server.url, server.embedded, pid, False, repr(error)
                )
            return ServerStatus(server.name, server.url, server.embedded, pid, True, None)

        return list(await asyncio.gather(*(one(server) for server in self)))

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
