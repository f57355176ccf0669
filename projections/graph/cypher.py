"""Every Cypher statement of the graph projection (docs/architecture.md §5), in one place.

Only the subset FalkorDB and Neo4j both accept: MERGE keyed by ids, plain properties (times as
epoch milliseconds, never temporal types), no `elementId()`, no `EXISTS {}` subqueries. Every
statement is idempotent, so applying an event twice changes nothing.

`GRAPH` describes each aggregate as the graph shows it (its edges) with a builder of statements
per event type; its node's label and the event types it does not show come from the aggregate's
spec (`schemas/specs.py`). Every event type of the domain is either built or named as not
graphed, so a new event needs a decision before the graph's tests pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain import agent, document
from domain.conversation import AssistantReplied
from domain.model import DomainEvent
from domain.task import TRANSITIONS
from schemas import specs
from schemas.envelope import EventEnvelope, RecordedEvent
from schemas.events import decode_event
from schemas.specs import AggregateSpec

Statement = tuple[str, dict[str, Any]]
Params = dict[str, Any]
Builder = Callable[[EventEnvelope, Params], list[Statement]]
"""The statements for one event, given its envelope and its node's key (`id`, `at`)."""


@dataclass(frozen=True)
class Edge:
    """A relationship the graph draws: `(:source)-[:name]->(:target)`."""

    source: str
    name: str
    target: str


@dataclass(frozen=True)
class GraphedAggregate:
    """How one aggregate of the domain shows in the graph, and which of its events do it."""

    spec: AggregateSpec
    """The aggregate; its spec names its node's label and the events the graph does not show."""
    edges: tuple[Edge, ...] = ()
    """The relationships its events draw."""
    builders: Mapping[str, Builder] = field(default_factory=dict)
    """Event type -> the statements it applies."""

    @property
    def aggregate(self) -> str:
        """The aggregate's name."""
        return self.spec.name

    @property
    def label(self) -> str | None:
        """Its node's label, keyed by `id` (the aggregate's id); None when it has no node."""
        return self.spec.graph_label

    @property
    def not_graphed(self) -> frozenset[str]:
        """Its event types that change nothing the graph shows (named, so none is forgotten)."""
        return self.spec.not_graphed


def _nothing(e: EventEnvelope, key: Params) -> list[Statement]:
    """The builder of an event the graph does not show."""
    return []


def _sets_status(label: str, status_of: Callable[[EventEnvelope], str]) -> Builder:
    """The builder of an event that moves only its node's status, to `status_of` it."""
    node = label[0].lower()
    statement = f"MERGE ({node}:{label} {{id: $id}}) SET {node}.status = $status"

    def build(e: EventEnvelope, key: Params) -> list[Statement]:
        return [(statement, {**key, "status": status_of(e)})]

    return build


def _status_by_type(status_after: Mapping[type[DomainEvent], StrEnum]) -> dict[str, str]:
    """Event type -> the status the domain's fold leaves its node in (the domain's own table)."""
    return {event.__name__: status.value for event, status in status_after.items()}


# --- user -----------------------------------------------------------------------------------


def _user_registered(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (u:User {id: $id}) SET u.username = $username, u.role = $role, "
            "u.active = true, u.created_at = $at",
            {**key, "username": e.data["username"], "role": e.data["role"]},
        )
    ]


def _user_role_changed(e: EventEnvelope, key: Params) -> list[Statement]:
    return [("MERGE (u:User {id: $id}) SET u.role = $role", {**key, "role": e.data["role"]})]


def _user_deactivated(e: EventEnvelope, key: Params) -> list[Statement]:
    return [("MERGE (u:User {id: $id}) SET u.active = false", key)]


# --- agent ----------------------------------------------------------------------------------

_AGENT_STATUS = _status_by_type(agent.STATUS_AFTER)


def _agent_registered(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (a:Agent {id: $id}) SET a.name = $name, a.kind = $kind, "
            "a.status = 'registered', a.created_at = $at",
            {**key, "name": e.data["name"], "kind": e.data["kind"]},
        )
    ]


# --- task -----------------------------------------------------------------------------------


def _task_status_after(e: EventEnvelope) -> str:
    """The status the domain gives a task after this event (its transitions are data)."""
    status = TRANSITIONS[e.event_type].status_after(e.data)
    assert status is not None  # only called for events that move the status
    return status.value


def _task_submitted(e: EventEnvelope, key: Params) -> list[Statement]:
    data = e.data
    found = [
        (
            "MERGE (t:Task {id: $id}) SET t.type = $type, t.priority = $priority, "
            "t.status = $status, t.created_at = $at "
            "MERGE (u:User {id: $owner}) MERGE (u)-[:CREATED]->(t)",
            {
                **key,
                "status": _task_status_after(e),
                "type": data["task_type"],
                "priority": data["priority"],
                "owner": data["owner_id"],
            },
        )
    ]
    if data.get("parent_id"):
        found.append(
            (
                "MERGE (t:Task {id: $id}) MERGE (p:Task {id: $parent}) "
                "MERGE (t)-[:SUBTASK_OF]->(p)",
                {**key, "parent": data["parent_id"]},
            )
        )
    documents = data.get("document_ids") or []  # absent before version 2
    if documents:
        found.append(
            (
                "MERGE (t:Task {id: $id}) WITH t UNWIND $documents AS document "
                "MERGE (d:Document {id: document}) MERGE (t)-[:REFERENCES]->(d)",
                {**key, "documents": documents},
            )
        )
    return found


def _subtask_attached(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (p:Task {id: $id}) MERGE (c:Task {id: $child}) MERGE (c)-[:SUBTASK_OF]->(p)",
            {**key, "child": e.data["subtask_id"]},
        )
    ]


def _task_assigned(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (t:Task {id: $id}) SET t.status = $status, t.agent = $agent "
            "MERGE (a:Agent {id: $agent}) MERGE (t)-[:ASSIGNED_TO]->(a)",
            {**key, "status": _task_status_after(e), "agent": e.data["agent_id"]},
        )
    ]


def _task_started(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (t:Task {id: $id}) SET t.status = $status, t.attempts = $attempt "
            "MERGE (a:Agent {id: $agent}) MERGE (a)-[:EXECUTED]->(t)",
            {
                **key,
                "status": _task_status_after(e),
                "agent": e.data["agent_id"],
                "attempt": e.data["attempt"],
            },
        )
    ]


_TASK_BUILDERS: dict[str, Builder] = {
    "TaskSubmitted": _task_submitted,
    "SubtaskAttached": _subtask_attached,
    "TaskAssigned": _task_assigned,
    "TaskStarted": _task_started,
}
"""The task events that draw more than a status. Every other task event whose transition moves
the status sets it, so a new one is graphed as the domain defines it."""


# --- agent_message --------------------------------------------------------------------------


def _agent_message_sent(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (s:Agent {id: $source}) MERGE (d:Agent {id: $target}) "
            "MERGE (s)-[r:SENT_MESSAGE_TO]->(d) "
            "ON CREATE SET r.messages = [] "
            # The count is derived in the same step: a message seen twice counts once.
            "WITH r, CASE WHEN $id IN r.messages THEN r.messages "
            "ELSE r.messages + [$id] END AS messages "
            "SET r.messages = messages, r.count = size(messages)",
            {**key, "source": e.data["source_agent_id"], "target": e.data["target_agent_id"]},
        )
    ]


# --- document -------------------------------------------------------------------------------

_DOCUMENT_STATUS = _status_by_type(document.STATUS_AFTER)


def _document_added(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (d:Document {id: $id}) SET d.title = $title, d.status = 'added', "
            "d.created_at = $at MERGE (u:User {id: $owner}) MERGE (u)-[:OWNS]->(d)",
            {**key, "title": e.data["title"], "owner": e.data["owner_id"]},
        )
    ]


# --- conversation ---------------------------------------------------------------------------


def _conversation_started(e: EventEnvelope, key: Params) -> list[Statement]:
    return [
        (
            "MERGE (c:Conversation {id: $id}) SET c.title = $title, c.created_at = $at "
            "MERGE (u:User {id: $owner}) MERGE (u)-[:OWNS]->(c) "
            "MERGE (u)-[:PARTICIPATES_IN]->(c)",
            {**key, "title": e.data["title"], "owner": e.data["owner_id"]},
        )
    ]


def _assistant_replied(e: EventEnvelope, key: Params) -> list[Statement]:
    reply = decode_event(e.event_type, e.schema_version, dict(e.data))
    assert isinstance(reply, AssistantReplied)
    citations = [str(citation.document_id) for citation in reply.citations]
    if not citations:
        return []
    return [
        (
            "MERGE (c:Conversation {id: $id}) WITH c UNWIND $documents AS document "
            "MERGE (d:Document {id: document}) MERGE (c)-[:CITES]->(d)",
            {**key, "documents": citations},
        )
    ]


# --- the table ------------------------------------------------------------------------------

GRAPH: tuple[GraphedAggregate, ...] = (
    GraphedAggregate(
        specs.USER,
        builders={
            "UserRegistered": _user_registered,
            "UserRoleChanged": _user_role_changed,
            "UserDeactivated": _user_deactivated,
        },
    ),
    GraphedAggregate(
        specs.AGENT,
        builders={
            "AgentRegistered": _agent_registered,
            **dict.fromkeys(
                _AGENT_STATUS, _sets_status("Agent", lambda e: _AGENT_STATUS[e.event_type])
            ),
        },
    ),
    GraphedAggregate(
        specs.TASK,
        edges=(
            Edge("User", "CREATED", "Task"),
            Edge("Task", "SUBTASK_OF", "Task"),
            Edge("Task", "REFERENCES", "Document"),
            Edge("Task", "ASSIGNED_TO", "Agent"),
            Edge("Agent", "EXECUTED", "Task"),
        ),
        builders={
            **{
                kind: _sets_status("Task", _task_status_after)
                for kind, transition in TRANSITIONS.items()
                if transition.status is not None and kind not in specs.TASK.not_graphed
            },
            **_TASK_BUILDERS,
        },
    ),
    GraphedAggregate(
        specs.AGENT_MESSAGE,
        edges=(Edge("Agent", "SENT_MESSAGE_TO", "Agent"),),
        builders={"AgentMessageSent": _agent_message_sent},
    ),
    GraphedAggregate(
        specs.DOCUMENT,
        edges=(Edge("User", "OWNS", "Document"),),
        builders={
            "DocumentAdded": _document_added,
            **dict.fromkeys(
                _DOCUMENT_STATUS,
                _sets_status("Document", lambda e: _DOCUMENT_STATUS[e.event_type]),
            ),
        },
    ),
    GraphedAggregate(
        specs.CONVERSATION,
        edges=(
            Edge("User", "OWNS", "Conversation"),
            Edge("User", "PARTICIPATES_IN", "Conversation"),
            Edge("Conversation", "CITES", "Document"),
        ),
        builders={
            "ConversationStarted": _conversation_started,
            "AssistantReplied": _assistant_replied,
        },
    ),
    GraphedAggregate(specs.MODEL_CALL),
    GraphedAggregate(specs.ALERT),
)

BUILDERS: dict[str, Builder] = {
    **{kind: _nothing for graphed in GRAPH for kind in graphed.not_graphed},
    **{kind: builder for graphed in GRAPH for kind, builder in graphed.builders.items()},
}
"""Event type -> its statements' builder, for every event type the graph has decided on."""

NODE_LABELS = (
    *(graphed.label for graphed in GRAPH if graphed.label is not None),
    "ProjectionCheckpoint",
)

CHECKPOINT = (
    "MERGE (k:ProjectionCheckpoint {name: $name}) "
    "SET k.sequence = CASE WHEN k.sequence IS NULL OR k.sequence < $sequence "
    "THEN $sequence ELSE k.sequence END"
)
READ_CHECKPOINT = "MATCH (k:ProjectionCheckpoint {name: $name}) RETURN k.sequence"


def statements(event: RecordedEvent) -> list[Statement]:
    """The Cypher that applies one event (none for events the graph does not show)."""
    e = event.envelope
    # A type this code does not know (written by a newer release) is not shown either.
    build = BUILDERS.get(e.event_type, _nothing)
    return build(e, {"id": str(e.aggregate_id), "at": int(e.occurred_at.timestamp() * 1000)})


# --- reads (the gateway's neighbourhood queries) --------------------------------------------

AGENTS_OF_TASK_TREE = (
    "MATCH (t:Task)-[:SUBTASK_OF*0..10]->(root:Task {id: $id}) "
    "MATCH (t)-[:ASSIGNED_TO]->(a:Agent) "
    "RETURN DISTINCT a.id ORDER BY a.id"
)
TASKS_REFERENCING_DOCUMENT = (
    "MATCH (t:Task)-[:REFERENCES]->(d:Document {id: $id}) RETURN DISTINCT t.id ORDER BY t.id"
)
