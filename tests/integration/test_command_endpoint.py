"""Commands over NATS request/reply, answered by the FastStream endpoint on the real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from nats.aio.client import Client as NatsClient
from uuid_utils.compat import uuid4, uuid7

from commands.dispatch import CommandDispatcher
from eventstore.store import EventStore
from handlers.command_endpoint import command_endpoint
from runtime.stack import Stack
from schemas.commands import CommandAccepted, CommandRequest
from tests.tasks import ALICE, OWNER


@pytest.fixture(scope="module")
async def endpoint(stack: Stack, dispatcher: CommandDispatcher) -> AsyncIterator[None]:
    async with command_endpoint(stack.nats_url, dispatcher):
        yield


async def _request(client: NatsClient, name: str, body: bytes | dict[str, Any]) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await client.request(f"sutazai.cmd.{name}", raw, timeout=5)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


def _submission(command_id: str, **payload: Any) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "actor": ALICE.model_dump(),
        "reason": "integration test",
        "payload": {"owner_id": str(OWNER), "task_type": "test.explain", **payload},
    }


@pytest.mark.usefixtures("endpoint")
async def test_a_command_over_nats_gets_the_same_typed_result_as_in_process(
    nats_client: NatsClient, dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    command_id = str(uuid7())
    over_nats = await _request(nats_client, "SubmitTask", _submission(command_id))
    assert over_nats["ok"] is True
    accepted = CommandAccepted.model_validate(over_nats)
    assert str(accepted.aggregate_id) == command_id  # a UUID command id names the new task
    assert accepted.event_types == ["TaskSubmitted"]

    in_process = await dispatcher.dispatch(
        "SubmitTask", CommandRequest.model_validate(_submission(command_id))
    )
    assert in_process.model_dump(mode="json") == {**over_nats, "duplicate": True}

    again = await _request(nats_client, "SubmitTask", _submission(command_id))
    assert again == {**over_nats, "duplicate": True}
    stored = [e async for e in event_store.aggregate_events("task", accepted.aggregate_id)]
    assert len(stored) == 1
    assert stored[0].envelope.reason == "integration test"
    assert stored[0].envelope.actor == ALICE


@pytest.mark.usefixtures("endpoint")
async def test_bad_input_over_nats_is_a_typed_refusal_naming_the_field(
    nats_client: NatsClient, event_store: EventStore
) -> None:
    before = await event_store.last_sequence()

    not_json = await _request(nats_client, "SubmitTask", b"{not json")
    assert not_json["ok"] is False
    assert not_json["error"]["code"] == "VALIDATION"

    no_actor = await _request(nats_client, "SubmitTask", {"payload": {}})
    assert [f["field"] for f in no_actor["error"]["fields"]] == ["actor"]

    bad_priority = await _request(nats_client, "SubmitTask", _submission(str(uuid4()), priority=0))
    assert bad_priority["error"]["code"] == "VALIDATION"
    assert [f["field"] for f in bad_priority["error"]["fields"]] == ["payload.priority"]

    illegal = await _request(
        nats_client,
        "StartTask",
        {"actor": ALICE.model_dump(), "payload": {"task_id": str(uuid7())}},
    )
    assert illegal["error"]["code"] == "NOT_FOUND"
    assert illegal["error"]["type"] == "AggregateNotFound"

    assert await event_store.last_sequence() == before


@pytest.mark.usefixtures("endpoint")
async def test_a_user_registers_over_nats_and_the_password_is_never_stored(
    nats_client: NatsClient, event_store: EventStore
) -> None:
    name = f"nats{uuid4().hex[:8]}"
    reply = await _request(
        nats_client,
        "RegisterUser",
        {
            "actor": {"id": "signup-service", "kind": "system"},
            "payload": {
                "email": f"{name}@example.org",
                "username": name,
                "password": "s3cret-pass",
            },
        },
    )
    assert reply["ok"] is True, reply
    stored = [e async for e in event_store.aggregate_events("user", UUID(reply["aggregate_id"]))]
    assert str(stored[0].envelope.data["password_hash"]).startswith("$argon2")
    assert "s3cret-pass" not in stored[0].envelope.model_dump_json()
