"""One spec per aggregate: everything the outer layers derive from or are checked against.

Each `AggregateSpec` names an aggregate's stream subject, its events and their versions, its
commands (all three from the domain and the event registry), and, as plain data, its read-model
table with each column's SQL type and the events that set it, the GraphQL type and the field
that shows each column, and how the graph treats its events (docs/architecture.md §2, §5, §7).

It lives here, in the wire contract, because the read side (`projections/`) and the gateway
(`gateway/`) both read it and may not import each other; the domain stays free of tables and
GraphQL. The tests in `tests/unit/test_specs.py` and `tests/integration/test_specs.py` hold the
migrations, the row folds, the gateway's queries and types and the graph to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from domain.aggregates import AGGREGATES, AggregateKind
from schemas.envelope import aggregate_subjects
from schemas.events import schema_version


@dataclass(frozen=True)
class Column:
    """One column of a read-model table."""

    name: str
    sql: str
    """Its type as PostgreSQL names it (`format_type`: `uuid[]`, `timestamp with time zone`)."""
    nullable: bool = False
    set_by: frozenset[str] = frozenset()
    """The event types that set it (empty for the bookkeeping every event moves)."""
    field: str | None = None
    """The GraphQL object's field that shows it (snake_case, as in Python); None: not shown."""


BOOKKEEPING = ("created_at", "updated_at", "version", "last_sequence", "events_applied", "state")
"""The columns every aggregate's row ends with, written by the projector, not by a fold."""

_BOOKKEEPING_SQL = {
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
    "version": "integer",
    "last_sequence": "bigint",
    "events_applied": "integer",
    "state": "jsonb",
}


@dataclass(frozen=True)
class Table:
    """A read-model table and the GraphQL object type that shows a row of it."""

    table: str
    columns: tuple[Column, ...]
    graphql_type: str

    @property
    def shown(self) -> tuple[Column, ...]:
        """The columns the gateway reads to show a row."""
        return tuple(c for c in self.columns if c.field is not None)


@dataclass(frozen=True)
class ChildTable(Table):
    """Rows an aggregate's table holds many of per aggregate (a conversation's messages). Its
    first column names the parent aggregate."""


@dataclass(frozen=True)
class ReadModel(Table):
    """An aggregate's table: one row per aggregate, its id first and the bookkeeping last (every
    column: the id, the own columns, the bookkeeping; the table's order may differ)."""

    state_only: frozenset[str] = frozenset()
    """Fields of the state kept in the `state` column only; every other field is a column."""
    children: tuple[ChildTable, ...] = ()
    """Its child tables, written in the same transaction as its rows."""

    @property
    def id_column(self) -> str:
        """The primary key: the aggregate's id."""
        return self.columns[0].name

    @property
    def own_columns(self) -> tuple[Column, ...]:
        """The columns a fold writes: neither the id nor the bookkeeping."""
        return tuple(c for c in self.columns[1:] if c.name not in BOOKKEEPING)


@dataclass(frozen=True)
class AggregateSpec:
    """One aggregate, as every layer outside the domain sees it."""

    kind: AggregateKind
    read_model: ReadModel | None
    """None: the aggregate has no table of its own (its events are in `event_log` only)."""
    graph_label: str | None
    """Its node's label in the graph; None when it has no node."""
    not_graphed: frozenset[str] = frozenset()
    """Its event types that change nothing the graph shows (named, so none is forgotten)."""

    @property
    def table(self) -> ReadModel:
        """Its read model, for an aggregate that has one (a LookupError for one that has not)."""
        if self.read_model is None:
            raise LookupError(f"the {self.name} aggregate has no read model")
        return self.read_model

    @property
    def name(self) -> str:
        """The aggregate's name (`task`)."""
        return self.kind.name

    @property
    def subject(self) -> str:
        """The subject filter of all its events."""
        return aggregate_subjects(self.name, "*")

    @property
    def events(self) -> Mapping[str, int]:
        """Its event types and the schema version the code writes of each."""
        return {model.__name__: schema_version(model) for model in self.kind.events}

    @property
    def commands(self) -> tuple[type[BaseModel], ...]:
        """Its commands, the creating one first."""
        return self.kind.commands


class _Columns:
    """Builds a table's columns: the id, the own columns, then the bookkeeping."""

    def __init__(self, creation: str) -> None:
        self.creation = creation
        """The creating event: it sets every own column."""
        self.found: list[Column] = []

    def add(
        self,
        name: str,
        sql: str,
        *set_by: str,
        nullable: bool = False,
        shown: bool = True,
    ) -> _Columns:
        """A column set by the creation and `set_by`, shown in GraphQL by its own name or not."""
        events = frozenset({self.creation, *set_by})
        self.found.append(Column(name, sql, nullable, events, name if shown else None))
        return self

    def done(self, *shown: str, sequence: str | None = None) -> tuple[Column, ...]:
        """With the bookkeeping, of which `shown` (and `last_sequence` as `sequence`) are shown."""
        id_column, *own = self.found
        key = Column(id_column.name, id_column.sql, field="id")
        bookkeeping = (
            Column(
                name,
                _BOOKKEEPING_SQL[name],
                field=name if name in shown else sequence if name == "last_sequence" else None,
            )
            for name in BOOKKEEPING
        )
        return (key, *own, *bookkeeping)


def _columns(id_column: str, creation: str) -> _Columns:
    return _Columns(creation).add(id_column, "uuid")


USER = AggregateSpec(
    AGGREGATES["user"],
    ReadModel(
        "users",
        _columns("user_id", "UserRegistered")
        .add("email", "text")
        .add("username", "text")
        .add("role", "text", "UserRoleChanged")
        .add("active", "boolean", "UserDeactivated")
        .done("created_at", "version"),
        graphql_type="User",
        state_only=frozenset({"password_hash"}),  # a secret: read for sign-in, never listed
    ),
    graph_label="User",
)

_AGENT_STATUS = ("AgentWentOnline", "AgentBecameBusy", "AgentWentOffline", "AgentRetired")
AGENT = AggregateSpec(
    AGGREGATES["agent"],
    ReadModel(
        "agents",
        _columns("agent_id", "AgentRegistered")
        .add("name", "text")
        .add("kind", "text")
        .add("capabilities", "text[]")
        .add("model", "text")
        .add("status", "text", *_AGENT_STATUS)
        .done("created_at", "updated_at", "version"),
        graphql_type="Agent",
    ),
    graph_label="Agent",
)

TASK = AggregateSpec(
    AGGREGATES["task"],
    ReadModel(
        "tasks",
        _columns("task_id", "TaskSubmitted")
        .add("owner_id", "uuid")
        .add("task_type", "text")
        .add("priority", "integer")
        .add(
            "status",
            "text",
            *("TaskAssigned", "TaskStarted", "TaskCompleted", "TaskFailed"),
            *("TaskRetried", "TaskCancelled", "TaskTimedOut"),
        )
        .add("payload", "jsonb")
        .add("attempts", "integer", "TaskStarted")
        .add("max_attempts", "integer")
        .add("agent_id", "uuid", "TaskAssigned", "TaskStarted", "TaskRetried", nullable=True)
        .add(
            "progress",
            "integer",
            *("TaskStarted", "TaskProgressReported", "TaskCompleted"),
        )
        .add("result", "jsonb", "TaskCompleted", nullable=True)
        .add("error", "jsonb", "TaskStarted", "TaskFailed", nullable=True)
        .add("parent_id", "uuid", nullable=True)
        # Shown as `subtasks`, found by `parent_id`: the gateway never reads this column.
        .add("subtask_ids", "uuid[]", "SubtaskAttached", shown=False)
        .add("document_ids", "uuid[]")
        .add("deadline_seconds", "double precision", nullable=True, shown=False)
        .done("created_at", "updated_at", "version", sequence="sequence"),
        graphql_type="Task",
    ),
    graph_label="Task",
    not_graphed=frozenset({"TaskProgressReported"}),
)

AGENT_MESSAGE = AggregateSpec(
    AGGREGATES["agent_message"],
    ReadModel(
        "agent_messages",
        _columns("message_id", "AgentMessageSent")
        .add("source_agent_id", "uuid")
        .add("target_agent_id", "uuid")
        # Not a field of its own: messages are listed under their task.
        .add("task_id", "uuid", nullable=True, shown=False)
        .add("message_type", "text")
        .add("payload", "jsonb")
        .add("acknowledged", "boolean", "AgentMessageAcknowledged")
        .done("created_at"),
        graphql_type="AgentMessage",
    ),
    graph_label=None,  # a message is counted on the edge between its two agents
    not_graphed=frozenset({"AgentMessageAcknowledged"}),
)

DOCUMENT = AggregateSpec(
    AGGREGATES["document"],
    ReadModel(
        "documents",
        _columns("document_id", "DocumentAdded")
        .add("owner_id", "uuid")
        .add("title", "text")
        .add("content_hash", "text")
        .add("content_size", "integer")
        .add("inline_content", "boolean", shown=False)
        .add("metadata", "jsonb")
        .add(
            "status",
            "text",
            "DocumentIndexed",
            "DocumentIndexFailed",
            "DocumentRemoved",
        )
        .add("chunk_count", "integer", "DocumentIndexed")
        .add("embedding_model", "text", "DocumentIndexed", nullable=True)
        .add("error", "jsonb", "DocumentIndexed", "DocumentIndexFailed", nullable=True)
        .done("created_at", "updated_at", "version"),
        graphql_type="Document",
        state_only=frozenset({"content"}),  # up to a blob's size: `inline_content` says if held
    ),
    graph_label="Document",
)

CONVERSATION = AggregateSpec(
    AGGREGATES["conversation"],
    ReadModel(
        "conversations",
        _columns("conversation_id", "ConversationStarted")
        .add("owner_id", "uuid")
        .add("title", "text")
        .add("model", "text")
        .add("closed", "boolean", "ConversationClosed")
        .add("message_count", "integer", "UserMessagePosted", "AssistantReplied")
        .done("created_at", "updated_at", "version"),
        graphql_type="Conversation",
        state_only=frozenset({"messages"}),  # one row each in `conversation_messages`
        children=(
            ChildTable(
                "conversation_messages",
                (
                    Column("conversation_id", "uuid"),  # not a field: messages are listed under it
                    Column("position", "integer", field="position"),
                    Column("message_id", "uuid", field="id"),
                    Column("role", "text", field="role"),
                    Column("content", "text", field="content"),
                    Column("model", "text", nullable=True, field="model"),
                    Column("in_reply_to", "uuid", nullable=True, field="in_reply_to"),
                    Column("citations", "jsonb", field="citations"),
                ),
                graphql_type="ConversationMessage",
            ),
        ),
    ),
    graph_label="Conversation",
    not_graphed=frozenset({"UserMessagePosted", "ConversationClosed"}),
)

MODEL_CALL = AggregateSpec(
    AGGREGATES["model_call"], None, graph_label=None, not_graphed=frozenset({"ModelCalled"})
)

ALERT = AggregateSpec(
    AGGREGATES["alert"],
    None,
    graph_label=None,
    not_graphed=frozenset({"AlertRaised", "AlertCleared"}),
)

SPECS: dict[str, AggregateSpec] = {
    spec.name: spec
    for spec in (USER, AGENT, TASK, AGENT_MESSAGE, DOCUMENT, CONVERSATION, MODEL_CALL, ALERT)
}
"""Aggregate name -> its spec; every aggregate of the domain has one."""
