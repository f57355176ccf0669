"""A server stops under the gateway: typed UNAVAILABLE in bounded time, then recovery."""

from __future__ import annotations

import time

import httpx

from tests.conftest import ServerFaults
from tests.e2e.conftest import Gateway

SUBMIT = """
mutation { submitTask(input: {taskType: "test.generate"}) { aggregateId sequence } }
"""


async def test_with_nats_down_mutations_answer_unavailable_and_recover_after_restart(
    gateway: Gateway, server_faults: ServerFaults
) -> None:
    client = gateway.client
    user = await client.sign_up()
    server_faults.kill("nats")

    started = time.monotonic()
    down = await client.call(SUBMIT, token=user.access_token)
    took = time.monotonic() - started
    assert down["errors"][0]["extensions"]["code"] == "UNAVAILABLE", down
    assert took < gateway.platform.settings.store_timeout + 2
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert set(ready.json()["failed"]) == {"nats"}

    await server_faults.restart("nats")
    deadline = time.monotonic() + 20
    while True:
        answer = await client.call(SUBMIT, token=user.access_token)
        if not answer.get("errors") or time.monotonic() > deadline:
            break
    assert not answer.get("errors"), answer
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/readyz")).status_code == 200
