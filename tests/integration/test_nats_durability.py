"""The embedded NATS server syncs JetStream as `SUTAZAI_NATS_SYNC` says: `always` by default.

With nats-server's own default (a sync every two minutes) an OS crash or power loss can erase
writes it had acknowledged; `always` puts every write on disk before its ack.
"""

from __future__ import annotations

from typing import Any

import httpx

from runtime.servers.nats import NatsServer
from runtime.settings import Settings
from runtime.stack import Stack
from tests.servers import own_nats


async def _jetstream_config(server: NatsServer) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        varz = (await http.get(f"{server.monitor_url}/varz")).json()
    config: dict[str, Any] = varz["jetstream"]["config"]
    return config


async def test_the_platform_s_nats_server_syncs_before_every_ack(
    settings: Settings, stack: Stack
) -> None:
    assert settings.nats_sync == "always"  # the default, not set by the tests
    server = stack.embedded("nats")
    assert isinstance(server, NatsServer)
    assert (await _jetstream_config(server)).get("sync_always") is True


async def test_an_interval_is_written_as_the_server_s_sync_interval() -> None:
    async with own_nats(sync=Settings.model_validate({"nats_sync": "90s"}).nats_sync) as server:
        config = await _jetstream_config(server)
    assert config["sync_interval"] == 90 * 10**9  # nanoseconds
    assert not config.get("sync_always")
