"""The published contract (schemas/published/, docs/events.md) is what the code generates."""

from __future__ import annotations

import json

import graphql

from domain.agent import AgentKind, AgentStatus
from domain.aggregates import COMMANDS
from domain.conversation import MessageRole
from domain.document import DocumentStatus
from domain.task import TaskCompleted, TaskStatus
from domain.user import Role
from schemas import published
from schemas.events import EVENTS, decode_event


def test_the_checked_in_contract_matches_the_code() -> None:
    wrong = published.differences()
    assert wrong == [], f"run `sutazai schemas export` and commit: {wrong}"


def test_the_asyncapi_document_names_every_event_and_command_subject() -> None:
    document = json.loads((published.PUBLISHED / "asyncapi.json").read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {published.event_subject_pattern(e) for e in EVENTS} | {
        f"sutazai.cmd.{name}" for name in COMMANDS
    } | {"sutazai.live.conversation.{conversation_id}"}


def test_docs_list_every_event_and_command() -> None:
    text = published.EVENTS_DOC.read_text()
    for event_type in EVENTS:
        assert f"### {event_type} " in text
    for name in COMMANDS:
        assert f"`sutazai.cmd.{name}`" in text


def test_an_event_schema_accepts_a_real_envelope_and_pins_its_type() -> None:
    schema = json.loads((published.PUBLISHED / "events" / "TaskSubmitted.v2.json").read_text())
    assert schema["properties"]["event_type"]["const"] == "TaskSubmitted"
    assert schema["properties"]["schema_version"]["const"] == 2
    assert "document_ids" in json.dumps(schema)
    register = json.loads((published.PUBLISHED / "commands" / "RegisterUser.json").read_text())
    assert "password_hash" not in json.dumps(register)


def test_the_graphql_schema_publishes_the_closed_sets_as_enums_and_task_types_as_a_scalar() -> None:
    schema = graphql.build_schema(published.GRAPHQL_SCHEMA.read_text())
    for closed in (TaskStatus, AgentStatus, AgentKind, Role, DocumentStatus, MessageRole):
        enum = schema.get_type(closed.__name__)
        assert isinstance(enum, graphql.GraphQLEnumType), closed
        assert list(enum.values) == [member.name for member in closed]
    task_type = schema.get_type("TaskType")
    assert isinstance(task_type, graphql.GraphQLScalarType)
    assert "^[a-z][a-z0-9_.-]*$" in (task_type.description or "")
    submit = schema.get_type("SubmitTaskInput")
    assert isinstance(submit, graphql.GraphQLInputObjectType)
    assert str(submit.fields["taskType"].type) == "TaskType!"
    assert "1 (the most urgent) to 10" in (submit.fields["priority"].description or "")


def test_a_superseded_event_version_keeps_its_schema_and_is_upcast_on_read() -> None:
    old = json.loads((published.PUBLISHED / "events" / "TaskCompleted.v1.json").read_text())
    new = json.loads((published.PUBLISHED / "events" / "TaskCompleted.v2.json").read_text())
    assert old["properties"]["schema_version"]["const"] == 1
    assert new["properties"]["schema_version"]["const"] == 2
    read = decode_event("TaskCompleted", 1, {"result": {"text": "done"}})
    assert isinstance(read, TaskCompleted)
    assert read.failed_subtask_ids == ()
