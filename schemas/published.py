"""The published contract, generated from the models: JSON Schema per event, AsyncAPI, the
GraphQL schema (SDL), docs.

`sutazai schemas export` writes `schemas/published/` and `docs/events.md`; a test fails when
the checked-in files differ from what this module generates.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, EmailStr, Field, JsonValue, create_model

from domain.aggregates import AGGREGATES, COMMANDS
from domain.user import Role
from schemas.commands import CommandAccepted, CommandRefused, CommandRequest, command_subject
from schemas.envelope import EVENT_SUBJECT_PREFIX, EventEnvelope
from schemas.events import EVENTS, SUPERSEDED, schema_version
from schemas.live import LIVE_CONVERSATION_PREFIX, ReplyToken

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "schemas" / "published"
GRAPHQL_SCHEMA = PUBLISHED / "schema.graphql"
EVENTS_DOC = ROOT / "docs" / "events.md"
CONTRACT_VERSION = "1.0.0"


class RegisterUserPayload(BaseModel):
    """RegisterUser on the wire: the password travels once and is stored only as a hash."""

    user_id: UUID | None = None
    email: EmailStr
    username: str
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.USER


class AddDocumentPayload(BaseModel):
    """AddDocument on the wire: the text; the platform stores it inline or by hash."""

    document_id: UUID | None = None
    owner_id: UUID
    title: str
    content: str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


_WIRE: dict[str, type[BaseModel]] = {
    "RegisterUser": RegisterUserPayload,
    "AddDocument": AddDocumentPayload,
}


def event_subject_pattern(event_type: str) -> str:
    """`sutazai.events.<aggregate>.{aggregate_id}.<EventType>`."""
    aggregate, _ = EVENTS[event_type]
    return f"{EVENT_SUBJECT_PREFIX}.{aggregate}.{{aggregate_id}}.{event_type}"


def envelope_model(event_type: str, version: int | None = None) -> type[BaseModel]:
    """The envelope of one event type (the current version unless told), its `data` typed."""
    aggregate, model = EVENTS[event_type]
    if version is not None and version != schema_version(model):
        model = SUPERSEDED[(event_type, version)]
    else:
        version = schema_version(model)
    fields: dict[str, Any] = {
        "event_type": (Literal[event_type], ...),
        "aggregate_type": (Literal[aggregate], ...),
        "schema_version": (Literal[version], ...),
        "data": (model, ...),
    }
    typed: type[BaseModel] = create_model(
        f"{event_type}Envelope",
        __base__=EventEnvelope,
        __doc__=f"{event_type} (aggregate `{aggregate}`): {(model.__doc__ or '').strip()}",
        **fields,
    )
    return typed


def wire_payload(command_name: str) -> type[BaseModel]:
    """What `payload` holds for a command; a creation's own id may be left out (derived)."""
    if command_name in _WIRE:
        return _WIRE[command_name]
    kind, model = COMMANDS[command_name]
    if model is not kind.creation:
        return model
    payload: type[BaseModel] = create_model(
        f"{command_name}Payload",
        __base__=model,
        __doc__=model.__doc__,
        **{kind.id_field: (UUID | None, None)},  # type: ignore[call-overload]
    )
    return payload


def request_model(command_name: str) -> type[BaseModel]:
    """The whole request body of `sutazai.cmd.<CommandName>`."""
    request: type[BaseModel] = create_model(
        f"{command_name}Request",
        __base__=CommandRequest,
        __doc__=(COMMANDS[command_name][1].__doc__ or "").strip(),
        payload=(wire_payload(command_name), ...),
    )
    return request


def event_json_schemas() -> dict[str, dict[str, Any]]:
    """`<EventType>.v<N>.json` -> its JSON Schema, for the current versions and the superseded
    ones a log may still hold."""
    versions = [(event_type, schema_version(model)) for event_type, (_, model) in EVENTS.items()]
    return {
        f"{event_type}.v{version}.json": envelope_model(event_type, version).model_json_schema()
        for event_type, version in sorted([*versions, *SUPERSEDED])
    }


def command_json_schemas() -> dict[str, dict[str, Any]]:
    """`<CommandName>.json` -> the JSON Schema of its request."""
    return {f"{name}.json": request_model(name).model_json_schema() for name in sorted(COMMANDS)}


def asyncapi_document() -> dict[str, Any]:
    """AsyncAPI 3 for every subject, from a FastStream broker that declares them (never run)."""
    broker = NatsBroker(
        "nats://127.0.0.1:14222",
        description="The embedded default; production runs a NATS cluster of its own.",
    )
    for event_type in sorted(EVENTS):
        model = envelope_model(event_type)
        broker.publisher(
            event_subject_pattern(event_type),
            title=event_type,
            description=model.__doc__,
            schema=model,
            stream="SUTAZAI_EVENTS",
        )
    broker.publisher(
        f"{LIVE_CONVERSATION_PREFIX}.{{conversation_id}}",
        title="ReplyToken",
        description=ReplyToken.__doc__,
        schema=ReplyToken,
    )
    for name in sorted(COMMANDS):
        broker.subscriber(
            command_subject(name),
            title=name,
            description=f"{(COMMANDS[name][1].__doc__ or '').strip()} Replies "
            "CommandAccepted or CommandRefused.",
        )(_declared_handler(name))
    spec = AsyncAPI(
        broker,
        title="SutazAI",
        version=CONTRACT_VERSION,
        description="Events on SUTAZAI_EVENTS and commands over NATS request/reply.",
        schema_version="3.0.0",
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    return document


def _declared_handler(name: str) -> Any:
    request = request_model(name)

    async def handler(body: Any) -> Any:
        raise NotImplementedError("a declaration for the specification, never run")

    # Real types, not the strings postponed annotations would leave for FastStream to resolve.
    handler.__annotations__ = {"body": request, "return": CommandAccepted | CommandRefused}
    handler.__name__ = name
    return handler


def events_markdown() -> str:
    """`docs/events.md`: every subject, event and field, for integrators."""
    lines = [
        "# SutazAI events and commands",
        "",
        "Generated by `sutazai schemas export` from the code; a test keeps it true.",
        "JSON Schemas: `schemas/published/events/`, `schemas/published/commands/`;",
        "AsyncAPI 3: `schemas/published/asyncapi.json`; the GraphQL gateway's schema:",
        "`schemas/published/schema.graphql`.",
        "",
        "Every event is a JSON envelope on stream `SUTAZAI_EVENTS`, subject",
        "`sutazai.events.<aggregate>.<aggregate_id>.<EventType>`, with the fields",
        "`event_id, event_type, schema_version, aggregate_type, aggregate_id, aggregate_version,",
        "occurred_at, actor {id, kind}, command_id, correlation_id, causation_id, reason, data`",
        "and the headers `Nats-Msg-Id`, `Sutazai-Event-Type`, `Sutazai-Aggregate-Version`,",
        "`Sutazai-Correlation-Id`. Below, the `data` of each event.",
        "",
    ]
    for aggregate in AGGREGATES:
        lines += [f"## {aggregate}", ""]
        for event_type, (owner, model) in EVENTS.items():
            if owner != aggregate:
                continue
            lines += [
                f"### {event_type} (schema version {schema_version(model)})",
                "",
                (model.__doc__ or "").strip(),
                "",
                f"Subject: `{event_subject_pattern(event_type)}`",
                "",
                *_field_table(model),
                "",
            ]
    lines += [
        "## Live reply tokens",
        "",
        (ReplyToken.__doc__ or "").strip(),
        f"Core NATS (not persisted), subject `{LIVE_CONVERSATION_PREFIX}.<conversation_id>`;",
        "the reply itself is then recorded as `AssistantReplied`.",
        "",
        *_field_table(ReplyToken),
        "",
        "## Commands",
        "",
        "Request/reply on `sutazai.cmd.<CommandName>`; the request is",
        "`{command_id?, actor {id, kind}, reason?, correlation_id?, causation_id?, payload}`.",
        "",
        "| command | subject | payload fields |",
        "|---|---|---|",
    ]
    for name in sorted(COMMANDS):
        fields = ", ".join(
            f"{field}{'' if info.is_required() else '?'}"
            for field, info in wire_payload(name).model_fields.items()
        )
        lines.append(f"| {name} | `{command_subject(name)}` | {fields} |")
    return "\n".join(lines) + "\n"


def _field_table(model: type[BaseModel]) -> list[str]:
    if not model.model_fields:
        return ["No fields."]
    rows = ["| field | type | required |", "|---|---|---|"]
    for field, info in model.model_fields.items():
        required = "yes" if info.is_required() else "no"
        rows.append(f"| {field} | {_type_name(info.annotation)} | {required} |")
    return rows


def _type_name(annotation: Any) -> str:
    """A field's type as an integrator reads it (enums show their values)."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if isinstance(annotation, type):
        return annotation.__name__
    text = re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])", "", str(annotation))
    return text.replace("|", "or")


def graphql_schema() -> str:
    """The gateway's GraphQL schema in SDL, its enums and scalars with what they accept."""
    # Imported here: the gateway builds on the schemas package, not the other way round.
    from gateway.schema import sdl

    return sdl()


def rendered() -> dict[Path, str]:
    """Every published file and its content."""
    files: dict[Path, str] = {
        PUBLISHED / "asyncapi.json": _dump(asyncapi_document()),
        GRAPHQL_SCHEMA: graphql_schema(),
        EVENTS_DOC: events_markdown(),
    }
    for name, schema in event_json_schemas().items():
        files[PUBLISHED / "events" / name] = _dump(schema)
    for name, schema in command_json_schemas().items():
        files[PUBLISHED / "commands" / name] = _dump(schema)
    return files


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def export() -> list[Path]:
    """Write every published file; returns those that changed. Stale files are removed."""
    files = rendered()
    changed = [
        path for path, text in files.items() if not path.exists() or path.read_text() != text
    ]
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
    for stale in PUBLISHED.rglob("*.json"):
        if stale not in files:
            stale.unlink()
            changed.append(stale)
    return changed


def differences() -> list[Path]:
    """Published files that differ from what the code generates (or are missing or stale)."""
    files = rendered()
    wrong = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    wrong += [stale for stale in PUBLISHED.rglob("*.json") if stale not in files]
    return wrong
