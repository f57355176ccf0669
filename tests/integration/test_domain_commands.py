"""Every aggregate's commands through the dispatcher and bus, on the real nats-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandBus, CommandContext
from commands.dispatch import CommandDispatcher
from commands.loading import load_aggregate
from domain.aggregates import AGGREGATES, COMMANDS, TASK
from domain.conversation import Conversation
from domain.document import Document, DocumentStatus
from domain.task import AssignTask, SubmitTask, Task
from domain.user import Role, User
from eventstore.blobs import BlobStore
from eventstore.store import EventStore
from schemas.commands import CommandAccepted, CommandRefused, CommandRequest
from schemas.envelope import Actor, EventEnvelope
from tests.tasks import ALICE, OWNER

ADMIN = Actor(id="admin", kind="user")
AGENT_ACTOR = Actor(id="code-assistant", kind="agent")


async def _send(
    dispatcher: CommandDispatcher,
    name: str,
    payload: dict[str, Any],
    *,
    actor: Actor = ALICE,
    **request: Any,
) -> CommandAccepted | CommandRefused:
    body = {"actor": actor, "payload": payload, **request}
    return await dispatcher.dispatch(name, CommandRequest.model_validate(body))


async def _ok(
    dispatcher: CommandDispatcher, name: str, payload: dict[str, Any], **kw: Any
) -> CommandAccepted:
    reply = await _send(dispatcher, name, payload, **kw)
    assert isinstance(reply, CommandAccepted), reply
    return reply


async def _state(store: EventStore, aggregate: str, aggregate_id: UUID) -> Any:
    return (await load_aggregate(store, AGGREGATES[aggregate], aggregate_id)).state


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid4().hex[:10]}"


def _registration(
    username: str, email: str | None = None, password: str = "long enough"
) -> dict[str, Any]:
    """A `RegisterUser` payload; the email is the username's at example.org unless given."""
    return {"email": email or f"{username}@example.org", "username": username, "password": password}


async def test_a_user_registers_with_a_hashed_password_changes_role_and_is_deactivated(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    name = _unique("ada")
    registered = await _ok(
        dispatcher,
        "RegisterUser",
        _registration(name, f"{name}@Example.org", "correct horse"),
        actor=ADMIN,
        reason="onboarding",
    )
    stored = [e async for e in event_store.aggregate_events("user", registered.aggregate_id)]
    assert "correct horse" not in stored[0].envelope.model_dump_json()
    assert stored[0].envelope.reason == "onboarding"
    await _ok(
        dispatcher, "ChangeUserRole", {"user_id": str(registered.aggregate_id), "role": "auditor"}
    )
    await _ok(dispatcher, "DeactivateUser", {"user_id": str(registered.aggregate_id)})

    user = await _state(event_store, "user", registered.aggregate_id)
    assert isinstance(user, User)
    assert (user.email, user.role, user.active) == (f"{name}@example.org", Role.AUDITOR, False)
    assert user.password_hash.startswith("$argon2")
    refused = await _send(
        dispatcher, "ChangeUserRole", {"user_id": str(user.user_id), "role": "admin"}
    )
    assert isinstance(refused, CommandRefused)
    assert refused.error.code == "ILLEGAL_TRANSITION"


async def test_two_registrations_racing_for_one_email_make_exactly_one_user(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    email = f"{_unique('race')}@example.org"
    replies = await asyncio.gather(
        *(
            _send(dispatcher, "RegisterUser", _registration(_unique("racer"), email))
            for _ in range(2)
        )
    )
    accepted = [r for r in replies if isinstance(r, CommandAccepted)]
    refused = [r for r in replies if isinstance(r, CommandRefused)]
    assert len(accepted) == 1
    assert len(refused) == 1
    assert refused[0].error.code == "ALREADY_EXISTS"
    assert refused[0].error.type == "ValueTaken"
    loser = refused[0].command_id
    assert loser is not None
    assert [e async for e in event_store.aggregate_events("user", UUID(loser))] == []
    # The same email in another case is the same email.
    again = await _send(dispatcher, "RegisterUser", _registration(_unique("late"), email.upper()))
    assert isinstance(again, CommandRefused)
    assert again.error.code == "ALREADY_EXISTS"


async def test_a_failed_registration_gives_its_reserved_values_back(
    dispatcher: CommandDispatcher,
) -> None:
    name = _unique("taken")
    first = await _ok(dispatcher, "RegisterUser", _registration(name))
    # A new email with the taken username: the email's reservation must not stay behind.
    fresh_email = f"{_unique('free')}@example.org"
    clash = await _send(dispatcher, "RegisterUser", _registration(name, fresh_email))
    assert isinstance(clash, CommandRefused)
    reuse = await _ok(dispatcher, "RegisterUser", _registration(_unique("other"), fresh_email))
    assert reuse.aggregate_id != first.aggregate_id


async def test_the_same_registration_sent_twice_is_one_user(dispatcher: CommandDispatcher) -> None:
    name = _unique("twice")
    payload = _registration(name)
    command_id = str(uuid7())
    first = await _ok(dispatcher, "RegisterUser", payload, command_id=command_id)
    again = await _ok(dispatcher, "RegisterUser", payload, command_id=command_id)
    assert again.duplicate
    assert (again.aggregate_id, again.sequence) == (first.aggregate_id, first.sequence)


async def test_an_agent_lives_from_registered_to_retired_and_names_are_unique(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    name = _unique("coder-")
    agent = await _ok(
        dispatcher,
        "RegisterAgent",
        {
            "name": name,
            "kind": "code_assistant",
            "capabilities": ["test.generate"],
            "model": "smollm2",
        },
    )
    agent_id = str(agent.aggregate_id)
    online = await _ok(dispatcher, "BringAgentOnline", {"agent_id": agent_id}, actor=AGENT_ACTOR)
    heartbeat = await _ok(dispatcher, "BringAgentOnline", {"agent_id": agent_id}, actor=AGENT_ACTOR)
    assert heartbeat.event_types == []
    assert heartbeat.version == online.version
    await _ok(dispatcher, "MarkAgentBusy", {"agent_id": agent_id})
    await _ok(dispatcher, "TakeAgentOffline", {"agent_id": agent_id})
    await _ok(dispatcher, "RetireAgent", {"agent_id": agent_id})
    state = await _state(event_store, "agent", agent.aggregate_id)
    assert state.status == "retired"

    clash = await _send(dispatcher, "RegisterAgent", {"name": name.upper(), "kind": "custom"})
    assert isinstance(clash, CommandRefused)
    assert clash.error.code == "ALREADY_EXISTS"


async def test_tasks_reference_documents_and_parents_record_their_subtasks(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    document_id = str(uuid7())
    parent = await _ok(
        dispatcher,
        "SubmitTask",
        {"owner_id": str(OWNER), "task_type": "test.workflow", "document_ids": [document_id]},
    )
    child = await _ok(
        dispatcher,
        "SubmitTask",
        {
            "owner_id": str(OWNER),
            "task_type": "test.generate",
            "parent_id": str(parent.aggregate_id),
        },
        actor=AGENT_ACTOR,
        causation_id="planner-event-1",
        correlation_id="workflow-1",
    )
    await _ok(
        dispatcher,
        "AttachSubtask",
        {"task_id": str(parent.aggregate_id), "subtask_id": str(child.aggregate_id)},
    )
    task = await _state(event_store, "task", parent.aggregate_id)
    assert isinstance(task, Task)
    assert task.subtask_ids == (child.aggregate_id,)
    assert task.document_ids == (UUID(document_id),)
    stored = [e async for e in event_store.aggregate_events("task", child.aggregate_id)]
    envelope = stored[0].envelope
    assert (envelope.causation_id, envelope.correlation_id) == ("planner-event-1", "workflow-1")
    assert envelope.actor == AGENT_ACTOR


async def test_agents_send_each_other_messages_about_a_task(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    sent = await _ok(
        dispatcher,
        "SendAgentMessage",
        {
            "source_agent_id": str(uuid7()),
            "target_agent_id": str(uuid7()),
            "task_id": str(uuid7()),
            "message_type": "result",
            "payload": {"summary": "done"},
        },
        actor=AGENT_ACTOR,
    )
    await _ok(dispatcher, "AcknowledgeAgentMessage", {"message_id": str(sent.aggregate_id)})
    message = await _state(event_store, "agent_message", sent.aggregate_id)
    assert message.acknowledged
    assert message.payload == {"summary": "done"}


async def test_a_small_document_is_inline_and_a_large_one_lives_in_the_object_store(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    small = await _ok(
        dispatcher,
        "AddDocument",
        {"owner_id": str(OWNER), "title": "notes", "content": "JetStream keeps the log."},
    )
    big_text = "The orchestrator plans workflows. " * 100  # 3.4 kB, over the 1 kB inline limit
    big = await _ok(
        dispatcher,
        "AddDocument",
        {"owner_id": str(OWNER), "title": "guide", "content": big_text, "metadata": {"lang": "en"}},
    )
    inline = await _state(event_store, "document", small.aggregate_id)
    stored = await _state(event_store, "document", big.aggregate_id)
    assert isinstance(inline, Document)
    assert isinstance(stored, Document)
    assert inline.content == "JetStream keeps the log."
    assert stored.content is None
    assert stored.content_size == len(big_text.encode())
    assert (await BlobStore(event_store).get(stored.content_hash)).decode() == big_text

    document_id = str(big.aggregate_id)
    await _ok(
        dispatcher,
        "MarkDocumentIndexFailed",
        {"document_id": document_id, "error": {"code": "EMBED_TIMEOUT", "message": "slow"}},
    )
    await _ok(
        dispatcher,
        "MarkDocumentIndexed",
        {"document_id": document_id, "chunk_count": 4, "embedding_model": "all-minilm"},
    )
    await _ok(dispatcher, "RemoveDocument", {"document_id": document_id})
    removed = await _state(event_store, "document", big.aggregate_id)
    assert (removed.status, removed.chunk_count) == (DocumentStatus.REMOVED, 4)


async def test_oversized_payloads_are_refused_by_name_and_nothing_is_appended(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    before = await event_store.last_sequence()
    task = await _send(
        dispatcher,
        "SubmitTask",
        {"owner_id": str(OWNER), "task_type": "test.generate", "payload": {"blob": "x" * 5000}},
    )
    document = await _send(
        dispatcher,
        "AddDocument",
        {"owner_id": str(OWNER), "title": "huge", "content": "y" * 200_001},
    )
    short_password = await _send(
        dispatcher, "RegisterUser", _registration(_unique("p"), password="short")
    )
    assert isinstance(task, CommandRefused)
    assert isinstance(document, CommandRefused)
    assert isinstance(short_password, CommandRefused)
    assert (task.error.code, task.error.type) == ("TOO_LARGE", "PayloadTooLarge")
    assert "payload.payload" in task.error.message
    assert "payload.content" in document.error.message
    assert [f.field for f in short_password.error.fields] == ["payload.password"]
    assert await event_store.last_sequence() == before


async def test_a_conversation_records_questions_and_cited_replies(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    started = await _ok(dispatcher, "StartConversation", {"owner_id": str(OWNER), "title": "help"})
    conversation_id = str(started.aggregate_id)
    question = str(uuid7())
    await _ok(
        dispatcher,
        "PostUserMessage",
        {
            "conversation_id": conversation_id,
            "message_id": question,
            "content": "What keeps the log?",
        },
    )
    reply = {
        "conversation_id": conversation_id,
        "message_id": str(uuid7()),
        "in_reply_to": question,
        "content": "JetStream.",
        "model": "smollm2",
        "citations": [{"document_id": str(uuid7()), "chunk_index": 0}],
    }
    await _ok(dispatcher, "RecordAssistantReply", reply, actor=AGENT_ACTOR)
    unknown = await _send(
        dispatcher,
        "RecordAssistantReply",
        {**reply, "message_id": str(uuid7()), "in_reply_to": str(uuid7())},
    )
    assert isinstance(unknown, CommandRefused)
    assert unknown.error.code == "NOT_FOUND"
    await _ok(dispatcher, "CloseConversation", {"conversation_id": conversation_id})

    conversation = await _state(event_store, "conversation", started.aggregate_id)
    assert isinstance(conversation, Conversation)
    assert [m.role for m in conversation.messages] == ["user", "assistant"]
    assert conversation.messages[1].citations[0].chunk_index == 0
    assert conversation.closed


async def test_every_command_is_reachable_by_name() -> None:
    assert len(COMMANDS) == sum(len(kind.commands) for kind in AGGREGATES.values())
    assert set(AGGREGATES) == {
        "user",
        "agent",
        "task",
        "agent_message",
        "document",
        "conversation",
        "model_call",
        "alert",
    }


async def test_a_version_1_task_submitted_event_is_upcast_on_read(event_store: EventStore) -> None:
    task_id = uuid7()
    command_id = f"legacy-{uuid7()}"
    written_by_release_one = EventEnvelope(
        event_id=uuid7(),
        event_type="TaskSubmitted",
        schema_version=1,
        aggregate_type="task",
        aggregate_id=task_id,
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        actor=ALICE,
        command_id=command_id,
        correlation_id=command_id,
        # Version 1 had no document_ids (and left out unset optional fields).
        data={
            "task_id": str(task_id),
            "owner_id": str(OWNER),
            "task_type": "test.explain",
            "priority": 4,
            "payload": {},
            "max_attempts": 3,
        },
    )
    await event_store.append([written_by_release_one], expected_sequence=0)

    task = (await load_aggregate(event_store, TASK, task_id, use_snapshot=False)).state
    assert isinstance(task, Task)
    assert (task.document_ids, task.parent_id, task.priority) == ((), None, 4)


async def test_a_task_runs_through_every_command_of_its_life_on_the_server(
    dispatcher: CommandDispatcher, event_store: EventStore
) -> None:
    def of(task_id: UUID, **fields: Any) -> dict[str, Any]:
        return {"task_id": str(task_id), **fields}

    agent = str(uuid7())
    submitted = await _ok(
        dispatcher,
        "SubmitTask",
        {"owner_id": str(OWNER), "task_type": "test.review", "max_attempts": 2},
    )
    task_id = submitted.aggregate_id
    for name, fields in (
        ("AssignTask", {"agent_id": agent}),
        ("StartTask", {}),
        ("FailTask", {"error": {"code": "MODEL_TIMEOUT", "message": "slow", "retryable": True}}),
        ("RetryTask", {}),
        ("AssignTask", {"agent_id": agent}),
        ("StartTask", {}),
        ("ReportTaskProgress", {"percent": 60}),
        ("CompleteTask", {"result": {"review": "fine"}}),
    ):
        await _ok(dispatcher, name, of(task_id, **fields), actor=AGENT_ACTOR)
    done = await _state(event_store, "task", task_id)
    assert (done.status, done.attempts, done.result) == ("completed", 2, {"review": "fine"})

    for ending in ("CancelTask", "TimeOutTask"):
        other = await _ok(
            dispatcher, "SubmitTask", {"owner_id": str(OWNER), "task_type": "test.review"}
        )
        await _ok(dispatcher, "AssignTask", of(other.aggregate_id, agent_id=agent))
        await _ok(dispatcher, ending, of(other.aggregate_id))
        ended = await _state(event_store, "task", other.aggregate_id)
        assert ended.status == {"CancelTask": "cancelled", "TimeOutTask": "timed_out"}[ending]


async def test_a_command_caused_by_an_event_carries_its_correlation_and_is_sent_once(
    bus: CommandBus, event_store: EventStore
) -> None:
    submission = SubmitTask(task_id=uuid7(), owner_id=OWNER, task_type="test.generate")
    first = await bus.execute(
        submission, CommandContext(command_id=str(uuid7()), actor=ALICE, correlation_id="c-42")
    )
    stored = [e async for e in event_store.aggregate_events("task", submission.task_id)]
    trigger = stored[0].envelope
    assert stored[0].sequence == first.sequence

    caused = CommandContext.caused_by(trigger, AGENT_ACTOR, "assign")
    assign = AssignTask(task_id=submission.task_id, agent_id=uuid7())
    once = await bus.execute(assign, caused)
    redelivered = await bus.execute(
        assign, CommandContext.caused_by(trigger, AGENT_ACTOR, "assign")
    )

    assert redelivered.duplicate
    assert redelivered.sequence == once.sequence
    events = [e async for e in event_store.aggregate_events("task", submission.task_id)]
    assert len(events) == 2
    assert events[1].envelope.correlation_id == "c-42"
    assert events[1].envelope.causation_id == str(trigger.event_id)
