"""The gateway as Python's `gql` sees it: HTTP, both websocket protocols, multipart and SSE.

Our own test client proves only that we agree with ourselves; these tests use a client other
GraphQL servers are tested with, the way a user of ours would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from uuid_utils.compat import uuid7
from websockets.exceptions import ConnectionClosed

from commands.bus import CommandContext
from domain.task import AssignTask, CompleteTask, StartTask
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.e2e.conftest import Gateway, running_gateway

REGISTER = """
mutation ($i: RegisterInput!) { register(input: $i) { aggregateId } }
"""
LOGIN = """
mutation ($l: String!, $p: String!) { login(login: $l, password: $p) { accessToken } }
"""
SUBMIT = """
mutation { submitTask(input: {taskType: "test.gql", priority: 2, payload: {prompt: "fizzbuzz"}},
                      waitForProjection: true) { aggregateId sequence } }
"""
TASK_UPDATED = """
subscription ($id: ID!) { taskUpdated(id: $id) { sequence eventType status } }
"""
SUBMITTED = """
subscription ($after: Int) {
  events(filter: {aggregateType: "task", eventType: "TaskSubmitted"}, afterSequence: $after) {
    sequence aggregateId
  }
}
"""
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


def _http(gateway: Gateway, token: str | None = None, **extra: Any) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = AIOHTTPTransport(url=f"{gateway.url}/graphql", headers=headers, **extra)
    return Client(transport=transport)


def _websocket(
    gateway: Gateway, protocol: str, token: str | None, *, in_header: bool = False
) -> Client:
    """A websocket client; the token in `connection_init` or in the upgrade request's header."""
    bearer = {"Authorization": f"Bearer {token}"} if token else {}
    transport = WebsocketsTransport(
        url=gateway.url.replace("http://", "ws://") + "/graphql",
        subprotocols=[protocol],
        headers=bearer if in_header else None,
        init_payload={} if in_header else bearer,
    )
    return Client(transport=transport)


@contextlib.asynccontextmanager
async def _session(client: Client) -> AsyncIterator[AsyncClientSession]:
    async with client as session:
        assert isinstance(session, AsyncClientSession)
        yield session


async def _sign_up(gateway: Gateway) -> str:
    name = f"g{uuid7().hex[-12:]}"
    async with _session(_http(gateway)) as session:
        await session.execute(
            GraphQLRequest(
                REGISTER,
                variable_values={
                    "i": {"email": f"{name}@example.com", "username": name, "password": "pw " * 4}
                },
            )
        )
        login = await session.execute(
            GraphQLRequest(LOGIN, variable_values={"l": name, "p": "pw " * 4})
        )
    token: str = login["login"]["accessToken"]
    return token


async def _submit(gateway: Gateway, token: str) -> dict[str, Any]:
    async with _session(_http(gateway, token)) as session:
        submitted: dict[str, Any] = (await session.execute(GraphQLRequest(SUBMIT)))["submitTask"]
    return submitted


async def _work_through(gateway: Gateway, task_id: str) -> None:
    """What an agent does to a task: assign, start, complete (through the command bus)."""
    agent = Actor(id=str(uuid7()), kind="agent")
    for command in (
        AssignTask(task_id=UUID(task_id), agent_id=UUID(agent.id)),
        StartTask(task_id=UUID(task_id)),
        CompleteTask(task_id=UUID(task_id), result={"code": "print(1)"}),
    ):
        await gateway.platform.commands.bus.execute(
            command, CommandContext(command_id=str(uuid7()), actor=agent)
        )


async def _drain(
    client: Client, request: GraphQLRequest, into: list[dict[str, Any]] | None = None
) -> None:
    """Follow a subscription until it ends or fails (15 s at most)."""
    async with _session(client) as session, asyncio.timeout(15):
        async for message in session.subscribe(request):
            if into is not None:
                into.append(message)


def _client_for(gateway: Gateway, how: str, token: str) -> Client:
    if how == "multipart":
        return _http(gateway, token)
    protocol, _, where = how.partition("+")
    return _websocket(gateway, protocol, token, in_header=where == "header")


@pytest.mark.parametrize(
    "how", [TRANSPORT_WS, f"{TRANSPORT_WS}+header", LEGACY_WS, f"{LEGACY_WS}+header", "multipart"]
)
async def test_a_user_follows_their_task_to_completion(gateway: Gateway, how: str) -> None:
    token = await _sign_up(gateway)
    task_id = (await _submit(gateway, token))["aggregateId"]
    statuses: list[str] = []
    async with _session(_client_for(gateway, how, token)) as session:
        updates = session.subscribe(GraphQLRequest(TASK_UPDATED, variable_values={"id": task_id}))
        worker: asyncio.Task[None] | None = None
        async with asyncio.timeout(30):
            async for update in updates:
                statuses.append(update["taskUpdated"]["status"])
                if worker is None:
                    worker = asyncio.create_task(_work_through(gateway, task_id))
                if statuses[-1] == "COMPLETED":
                    break
        assert worker is not None
        await worker
    assert statuses == ["PENDING", "ASSIGNED", "RUNNING", "COMPLETED"]


async def test_a_subscriber_resumes_from_the_last_sequence_it_saw_through_any_transport(
    gateway: Gateway,
) -> None:
    start = await gateway.platform.store.last_sequence()
    submitted = [await _submit(gateway, await _sign_up(gateway)) for _ in range(4)]
    token = gateway.admin.access_token  # the whole log is for admins and auditors
    mine = {s["aggregateId"] for s in submitted}

    async def take(client: Client, after: int, count: int) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        request = GraphQLRequest(SUBMITTED, variable_values={"after": after})
        async with _session(client) as session, asyncio.timeout(30):
            async for message in session.subscribe(request):
                if message["events"]["aggregateId"] in mine:
                    seen.append(message["events"])
                if len(seen) == count:
                    break
        return seen

    # Each client stops mid-stream; the next resumes after the last sequence it was given.
    first = await take(_websocket(gateway, TRANSPORT_WS, token), start, 1)
    second = await take(_websocket(gateway, LEGACY_WS, token), first[-1]["sequence"], 1)
    rest = await take(_http(gateway, token), second[-1]["sequence"], 2)
    seen = first + second + rest
    assert [s["sequence"] for s in seen] == sorted(s["sequence"] for s in submitted)
    assert {s["aggregateId"] for s in seen} == mine


@pytest.mark.parametrize("how", [TRANSPORT_WS, LEGACY_WS, "multipart"])
async def test_a_subscription_without_a_token_gets_a_typed_error(
    gateway: Gateway, how: str
) -> None:
    client = _http(gateway) if how == "multipart" else _websocket(gateway, how, None)
    with pytest.raises(TransportQueryError) as refused:
        await _drain(client, GraphQLRequest(SUBMITTED, variable_values={"after": 0}))
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


def _close_code(error: BaseException) -> int | None:
    """The close code the server sent, from gql's error or the websocket error under it."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionClosed) and cause.rcvd is not None:
            return cause.rcvd.code
        cause = cause.__cause__ or cause.__context__
    return None


async def test_a_bad_token_in_connection_init_closes_the_socket_with_forbidden(
    gateway: Gateway,
) -> None:
    client = _websocket(gateway, TRANSPORT_WS, "not-a-token")
    with pytest.raises(TransportError) as closed:
        await _drain(client, GraphQLRequest(SUBMITTED, variable_values={"after": 0}))
    assert _close_code(closed.value) == 4403, closed.value


async def test_a_socket_whose_token_expires_is_closed_with_forbidden(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(settings, stack, access_token_seconds=2) as gateway:
        token = await _sign_up(gateway)
        task_id = (await _submit(gateway, token))["aggregateId"]
        request = GraphQLRequest(TASK_UPDATED, variable_values={"id": task_id})
        seen: list[dict[str, Any]] = []
        with pytest.raises(TransportError) as closed:
            await _drain(_websocket(gateway, TRANSPORT_WS, token), request, seen)
    assert len(seen) == 1  # served while the token was valid, then cut off
    assert _close_code(closed.value) == 4403, closed.value


async def test_a_subscription_sent_as_a_plain_query_names_the_transports_to_use(
    gateway: Gateway,
) -> None:
    token = await _sign_up(gateway)
    request = GraphQLRequest(SUBMITTED, variable_values={"after": 0})
    with pytest.raises(TransportQueryError) as refused:
        async with _session(_http(gateway, token)) as session:
            await session.execute(request)
    assert refused.value.errors is not None
    error = refused.value.errors[0]
    assert error["extensions"]["code"] == "VALIDATION"
    assert "graphql-transport-ws" in error["message"]
    assert "multipart/mixed" in error["message"]


async def test_a_subscription_streams_as_server_sent_events(gateway: Gateway) -> None:
    token = await _sign_up(gateway)
    task_id = (await _submit(gateway, token))["aggregateId"]
    body = {"query": TASK_UPDATED, "variables": {"id": task_id}}
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=15) as http,
        http.stream("POST", "/graphql", json=body, headers=headers) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        async with asyncio.timeout(15):
            event = [await anext(lines) for _ in range(2)]
    assert event[0] == "event: next"
    data = json.loads(event[1].removeprefix("data: "))
    assert data["data"]["taskUpdated"]["status"] == "PENDING"
