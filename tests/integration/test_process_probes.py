"""A process without the gateway (`projections run`, `agents run`) serves /healthz, /readyz and
/metrics on SUTAZAI_METRICS_PORT, so an orchestrator can probe it and Prometheus scrape it."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx

from runtime.settings import Settings
from runtime.stack import Stack
from tests.servers import cli_environment, free_port, sutazai_process, wait_for_line


async def test_projections_run_serves_probes_and_projection_metrics(
    settings: Settings, stack: Stack
) -> None:
    port = free_port()
    env = {**cli_environment(settings), "SUTAZAI_METRICS_PORT": str(port)}
    process = sutazai_process(env, "projections", "run", "--only", "tasks")
    try:
        await asyncio.to_thread(wait_for_line, process, "Projecting", 90)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            alive = await http.get("/healthz")
            ready = await http.get("/readyz")
            metrics = (await http.get("/metrics")).text
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert alive.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert 'sutazai_projection_checkpoint{projector="tasks"}' in metrics
    assert 'sutazai_projection_lag_events{projector="tasks"}' in metrics
    assert code == 0
