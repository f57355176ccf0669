"""The gateway's surface over real HTTP: health, metrics, paging, limits, tokens."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import websockets
from uuid_utils.compat import uuid7

from commands.bus import CommandContext
from domain.task import SubmitTask
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.conftest import ServerFaults
from tests.e2e.client import subscribe
from tests.e2e.conftest import Gateway, running_gateway

PAGE = """
query ($after: String) {
  tasks(filter: {status: PENDING, priority: 7}, first: 2, after: $after) {
    items { id status priority } nextCursor }
}
"""


async def test_liveness_readiness_and_metrics(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "failed": {}}
        await client.post("/graphql", json={"query": "{ me { id } }"})
        metrics = (await client.get("/metrics")).text
    assert 'sutazai_http_requests_total{path="/readyz",status="200"} 1.0' in metrics
    assert 'sutazai_graphql_errors_total{code="UNAUTHENTICATED"}' in metrics
    assert "sutazai_graphql_subscription_connections 0.0" in metrics


async def test_readiness_names_the_dependency_that_is_down(
    gateway: Gateway, server_faults: ServerFaults
) -> None:
    server_faults.kill("redis")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert set(ready.json()["failed"]) == {"redis"}


async def test_tasks_page_by_cursor_and_graphiql_is_served(gateway: Gateway) -> None:
    owner = uuid7()
    bus = gateway.platform.commands.bus
    actor = Actor(id=str(owner), kind="user")
    result = None
    for _ in range(3):
        submit = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="test.review", priority=7)
        result = await bus.execute(submit, CommandContext(command_id=str(uuid7()), actor=actor))
    assert result is not None
    assert await gateway.projected("tasks", result.sequence)
    token = gateway.admin.access_token
    first = (await gateway.client.data(PAGE, token=token))["tasks"]
    second = (await gateway.client.data(PAGE, {"after": first["nextCursor"]}, token))["tasks"]
    assert len(first["items"]) == 2
    assert second["items"]
    assert not {t["id"] for t in first["items"]} & {t["id"] for t in second["items"]}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        graphiql = await client.get("/graphql", headers={"Accept": "text/html"})
    assert graphiql.status_code == 200
    assert "graphiql" in graphiql.text.lower()


async def test_too_deep_too_large_and_malformed_requests_get_typed_errors(
    gateway: Gateway,
) -> None:
    token = gateway.admin.access_token
    levels = gateway.platform.settings.max_query_depth + 1
    deep = "{ tasks { items { " + "subtasks { " * levels + "id" + " }" * (levels + 3)
    body = await gateway.client.call(deep, token=token)
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION"
    assert "depth" in body["errors"][0]["message"]

    bad = await gateway.client.call("{ tasks(first: 5000) { items { id } } }", token=token)
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"
    typo = await gateway.client.call("{ taks { id } }", token=token)
    assert typo["errors"][0]["extensions"]["code"] == "VALIDATION"
    not_uuid = await gateway.client.call('{ task(id: "nope") { id } }', token=token)
    assert not_uuid["errors"][0]["extensions"]["code"] == "VALIDATION"

    huge = "{ me { id } }" + " " * (gateway.platform.settings.max_request_bytes + 1)
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        response = await client.post("/graphql", json={"query": huge})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION"


async def test_tokens_expire_rotate_and_a_reused_refresh_token_revokes_its_family(
    gateway: Gateway,
) -> None:
    client = gateway.client
    carol = await client.sign_up()
    forged = await client.call("{ me { id } }", token=carol.access_token + "x")
    assert forged["status"] == 401
    assert forged["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    refresh = "mutation ($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken } }"
    rotated = (await client.data(refresh, {"t": carol.refresh_token}))["refresh"]
    me = await client.data("{ me { username } }", token=rotated["accessToken"])
    assert me["me"]["username"] == carol.username

    reused = await client.call(refresh, {"t": carol.refresh_token})
    assert reused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # The thief's reuse revoked the family: the legitimate newer token is dead too.
    after_theft = await client.call(refresh, {"t": rotated["refreshToken"]})
    assert after_theft["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    dave = await client.sign_up()
    logout = "mutation ($t: String!) { logout(refreshToken: $t) }"
    # Nobody signs out someone else: Carol's try is answered False and changes nothing.
    assert not (await client.data(logout, {"t": dave.refresh_token}, rotated["accessToken"]))[
        "logout"
    ]
    assert (await client.data(logout, {"t": dave.refresh_token}, dave.access_token))["logout"]
    gone = await client.call(refresh, {"t": dave.refresh_token})
    assert gone["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_client_over_its_rate_gets_rate_limited_and_others_do_not(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(
        settings, stack, rate_limit_per_user=1.0, rate_limit_burst=10.0
    ) as gateway:
        await _burst_is_limited(gateway, burst=10)


async def _burst_is_limited(gateway: Gateway, burst: int) -> None:
    erin = await gateway.client.sign_up()
    started = time.monotonic()
    answers = await asyncio.gather(
        *(gateway.client.call("{ me { id } }", token=erin.access_token) for _ in range(burst + 20))
    )
    refilled = (time.monotonic() - started) * gateway.platform.settings.rate_limit_per_user
    limited = [a for a in answers if a["status"] == 429]
    served = [a for a in answers if a["status"] == 200]
    assert len(limited) + len(served) == len(answers), [a["status"] for a in answers]
    assert limited, "a burst over the bucket must be refused"
    assert all(a["errors"][0]["extensions"]["code"] == "RATE_LIMITED" for a in limited)
    assert len(served) <= burst + int(refilled) + 1, (len(served), refilled)
    other = await gateway.client.call("{ me { id } }", token=gateway.admin.access_token)
    assert other["status"] == 200


async def test_no_answer_ever_carries_a_password_hash(gateway: Gateway) -> None:
    client = gateway.client
    frank = await client.sign_up()
    admin = gateway.admin.access_token
    answers = [
        await client.call(
            'query ($id: ID!) { history(aggregateType: "user", id: $id) { data } }',
            {"id": frank.user_id},
            frank.access_token,
        ),
        await client.call(
            'query ($id: ID!) { stateAt(aggregateType: "user", id: $id) { state } }',
            {"id": frank.user_id},
            admin,
        ),
        await client.call(
            '{ events(filter: {eventType: "UserRegistered"}, first: 200) { items { data } } }',
            token=admin,
        ),
    ]
    subscription = (
        'subscription { events(filter: {eventType: "UserRegistered"}, afterSequence: 0) { data } }'
    )
    async with subscribe(gateway.url, subscription, {}, admin) as sub:
        answers.append(await sub.next())
    for answer in answers:
        assert not answer.get("errors"), answer
        text = json.dumps(answer)
        assert "argon2" not in text
        assert "password" not in text
    assert frank.username in json.dumps(answers[0])


async def test_a_nul_character_is_refused_before_anything_is_stored(gateway: Gateway) -> None:
    client = gateway.client
    gina = await client.sign_up()
    before = await gateway.platform.store.last_sequence()
    submit = await client.call(
        'mutation { submitTask(input: {taskType: "test.generate", payload: {p: "a\\u0000b"}}) {'
        " sequence } }",
        token=gina.access_token,
    )
    assert submit["errors"][0]["extensions"]["code"] == "VALIDATION"
    assert submit["errors"][0]["extensions"]["fields"][0]["field"] == "payload.payload.p"
    login = await client.call('mutation { login(login: "\\u0000", password: "x") { accessToken } }')
    assert login["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # A text filter that reaches PostgreSQL (an enum such as a task status never does).
    search = await client.call(
        '{ events(filter: {eventType: "\\u0000"}) { items { sequence } } }',
        token=gateway.admin.access_token,
    )
    assert search["errors"][0]["extensions"]["code"] == "VALIDATION"
    assert await gateway.platform.store.last_sequence() == before


async def test_websocket_connections_from_one_address_are_rate_limited(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(
        settings, stack, rate_limit_per_ip=0.1, rate_limit_burst=4.0
    ) as gateway:
        ws_url = gateway.url.replace("http://", "ws://") + "/graphql"
        accepted = 0
        statuses = []
        for _ in range(8):
            try:
                async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]):  # type: ignore[list-item]
                    accepted += 1
            except websockets.InvalidStatus as error:
                statuses.append(error.response.status_code)
        refused = len(statuses)
        assert set(statuses) <= {403}
    # The admin's sign-in took one token of the address's bucket of four.
    assert accepted <= 3
    assert refused >= 5


async def test_past_its_in_flight_bound_the_gateway_refuses_at_once_with_retry_after(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(
        settings, stack, gateway_max_in_flight=1, gateway_admission_wait=0.0
    ) as gateway:
        user = await gateway.client.sign_up()
        answers = await asyncio.gather(
            *(gateway.client.call("{ me { id } }", token=user.access_token) for _ in range(20))
        )
        statuses = sorted(a["status"] for a in answers)
        assert set(statuses) == {200, 503}, statuses
        busy = [a for a in answers if a["status"] == 503]
        assert all(a["errors"][0]["extensions"]["code"] == "UNAVAILABLE" for a in busy)
        assert all("retry in 1 s" in a["errors"][0]["message"] for a in busy)
        shed = gateway.platform.metrics.get_sample_value("sutazai_http_shed_total")
        assert shed == len(busy)


async def test_while_its_event_loop_runs_late_the_gateway_refuses_new_requests(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(settings, stack, gateway_max_loop_lag=0.02) as gateway:
        user = await gateway.client.sign_up()
        calm = await gateway.client.call("{ me { id } }", token=user.access_token)
        assert calm["status"] == 200

        async def hog() -> None:
            # Work that keeps the loop 50 ms late, as a queue of requests past capacity would.
            while True:
                time.sleep(0.05)  # noqa: ASYNC251 (blocking the loop is the point)
                await asyncio.sleep(0)

        hogging = asyncio.create_task(hog())
        try:
            answers = [
                await gateway.client.call("{ me { id } }", token=user.access_token)
                for _ in range(5)
            ]
        finally:
            hogging.cancel()
            await asyncio.gather(hogging, return_exceptions=True)
        busy = [a for a in answers if a["status"] == 503]
        assert busy, [a["status"] for a in answers]
        assert all(a["errors"][0]["extensions"]["code"] == "UNAVAILABLE" for a in busy)
