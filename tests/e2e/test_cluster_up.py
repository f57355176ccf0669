"""`sutazai up --cluster 3` as a user runs it: three NATS nodes, every stream at three replicas,
the platform up on them, and one Ctrl-C stops all of it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest

from eventstore.streams import EVENTS_STREAM, LEASES_BUCKET
from tests.servers import (
    cli_environment,
    free_port_run,
    isolated_settings,
    sutazai_process,
    wait_for_line,
)

pytestmark = pytest.mark.phase_timeout(240)


async def test_up_with_a_cluster_runs_three_nodes_and_stops_cleanly(own_root: Path) -> None:
    settings = isolated_settings(
        own_root,
        nats_port=free_port_run(3),
        nats_monitor_port=free_port_run(3),
        nats_route_port=free_port_run(3),
    )
    up = sutazai_process(cli_environment(settings), "up", "--cluster", "3")
    try:
        await asyncio.to_thread(wait_for_line, up, "SutazAI is up", 120)
        urls = [f"nats://127.0.0.1:{settings.nats_port + i}" for i in range(3)]
        client = await nats.connect(urls)
        try:
            js = client.jetstream()
            events = await js.stream_info(EVENTS_STREAM)
            leases = await js.stream_info(f"KV_{LEASES_BUCKET}")
        finally:
            await client.close()
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest = await asyncio.to_thread(wait_for_line, up, "Stopped.", 60)
        code = await asyncio.to_thread(up.wait, 30)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()

    assert code == 0
    for info in (events, leases):
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2  # beside the leader
    printed = "".join(rest)
    assert "Traceback" not in printed
    for node in ("nats-1", "nats-2", "nats-3"):
        assert f"{node}    stopped" in printed, printed
