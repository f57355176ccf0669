"""The published contract (schemas/published/, docs/events.md) is what the code generates."""

from __future__ import annotations

import json

from commands.aggregates import COMMANDS
from schemas import published
from schemas.events import EVENTS


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
