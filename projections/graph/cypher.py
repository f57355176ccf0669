"""Every Cypher statement of the graph projection (docs/architecture.md §5), in one place.

Only the subset FalkorDB and Neo4j both accept: MERGE keyed by ids, plain properties (times as
epoch milliseconds, never temporal types), no `elementId()`, no `EXISTS {}` subqueries. Every
statement is idempotent, so applying an event twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from domain.conversation import AssistantReplied
from schemas.envelope import RecordedEvent
from schemas.events import decode_event

Statement = tuple[str, dict[str, Any]]

NODE_LABELS = ("User", "Agent", "Task", "Document", "Conversation", "ProjectionCheckpoint")

_STATUS = {
    "TaskAssigned": "assigned",
    "TaskStarted": "running",
    "TaskCompleted": "completed",
    "TaskFailed": "failed",
    "TaskRetried": "pending",
    "TaskCancelled": "cancelled",
    "TaskTimedOut": "timed_out",
}

_AGENT_STATUS = {
    "AgentWentOnline": "online",
    "AgentBecameBusy": "busy",
    "AgentWentOffline": "offline",
    "AgentRetired": "retired",
}

_DOCUMENT_STATUS = {
    "DocumentIndexed": "indexed",
    "DocumentIndexFailed": "index_failed",
    "DocumentRemoved": "removed",
}

CHECKPOINT = (
    "MERGE (k:ProjectionCheckpoint {name: $name}) "
    "SET k.sequence = CASE WHEN k.sequence IS NULL OR k.sequence < $sequence "
    "THEN $sequence ELSE k.sequence END"
)
READ_CHECKPOINT = "MATCH (k:ProjectionCheckpoint {name: $name}) RETURN k.sequence"


def statements(event: RecordedEvent) -> list[Statement]:
    """The Cypher that applies one event (none for events the graph does not show)."""
    e = event.envelope
    data = e.data
    key = {"id": str(e.aggregate_id), "at": int(e.occurred_at.timestamp() * 1000)}
    kind = e.event_type
    if kind == "UserRegistered":
        return [
            (
                "MERGE (u:User {id: $id}) SET u.username = $username, u.role = $role, "
                "u.active = true, u.created_at = $at",
                {**key, "username": data["username"], "role": data["role"]},
            )
        ]
    if kind == "UserRoleChanged":
        return [("MERGE (u:User {id: $id}) SET u.role = $role", {**key, "role": data["role"]})]
    if kind == "UserDeactivated":
        return [("MERGE (u:User {id: $id}) SET u.active = false", key)]
    if kind == "AgentRegistered":
        return [
            (
                "MERGE (a:Agent {id: $id}) SET a.name = $name, a.kind = $kind, "
                "a.status = 'registered', a.created_at = $at",
                {**key, "name": data["name"], "kind": data["kind"]},
            )
        ]
    if kind in _AGENT_STATUS:
        return [
            (
                "MERGE (a:Agent {id: $id}) SET a.status = $status",
                {**key, "status": _AGENT_STATUS[kind]},
            )
        ]
    if kind == "TaskSubmitted":
        found = [
            (
                "MERGE (t:Task {id: $id}) SET t.type = $type, t.priority = $priority, "
                "t.status = 'pending', t.created_at = $at "
                "MERGE (u:User {id: $owner}) MERGE (u)-[:CREATED]->(t)",
                {
                    **key,
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
        documents = data.get("document_ids") or []
        if documents:
            found.append(
                (
                    "MERGE (t:Task {id: $id}) WITH t UNWIND $documents AS document "
                    "MERGE (d:Document {id: document}) MERGE (t)-[:REFERENCES]->(d)",
                    {**key, "documents": documents},
                )
            )
        return found
    if kind == "SubtaskAttached":
        return [
            (
                "MERGE (p:Task {id: $id}) MERGE (c:Task {id: $child}) MERGE (c)-[:SUBTASK_OF]->(p)",
                {**key, "child": data["subtask_id"]},
            )
        ]
    if kind == "TaskAssigned":
        return [
            (
                "MERGE (t:Task {id: $id}) SET t.status = 'assigned', t.agent = $agent "
                "MERGE (a:Agent {id: $agent}) MERGE (t)-[:ASSIGNED_TO]->(a)",
                {**key, "agent": data["agent_id"]},
            )
        ]
    if kind == "TaskStarted":
        return [
            (
                "MERGE (t:Task {id: $id}) SET t.status = 'running', t.attempts = $attempt "
                "MERGE (a:Agent {id: $agent}) MERGE (a)-[:EXECUTED]->(t)",
                {**key, "agent": data["agent_id"], "attempt": data["attempt"]},
            )
        ]
    if kind in _STATUS:
        status = _STATUS[kind]
        if kind == "TaskCompleted" and data.get("failed_subtask_ids"):  # absent before version 2
            status = "completed_with_failures"
        return [("MERGE (t:Task {id: $id}) SET t.status = $status", {**key, "status": status})]
    if kind == "AgentMessageSent":
        return [
            (
                "MERGE (s:Agent {id: $source}) MERGE (d:Agent {id: $target}) "
                "MERGE (s)-[r:SENT_MESSAGE_TO]->(d) "
                "ON CREATE SET r.messages = [] "
                # The count is derived in the same step: a message seen twice counts once.
                "WITH r, CASE WHEN $id IN r.messages THEN r.messages "
                "ELSE r.messages + [$id] END AS messages "
                "SET r.messages = messages, r.count = size(messages)",
                {**key, "source": data["source_agent_id"], "target": data["target_agent_id"]},
            )
        ]
    if kind == "DocumentAdded":
        return [
            (
                "MERGE (d:Document {id: $id}) SET d.title = $title, d.status = 'added', "
                "d.created_at = $at MERGE (u:User {id: $owner}) MERGE (u)-[:OWNS]->(d)",
                {**key, "title": data["title"], "owner": data["owner_id"]},
            )
        ]
    if kind in _DOCUMENT_STATUS:
        return [
            (
                "MERGE (d:Document {id: $id}) SET d.status = $status",
                {**key, "status": _DOCUMENT_STATUS[kind]},
            )
        ]
    if kind == "ConversationStarted":
        return [
            (
                "MERGE (c:Conversation {id: $id}) SET c.title = $title, c.created_at = $at "
                "MERGE (u:User {id: $owner}) MERGE (u)-[:OWNS]->(c) "
                "MERGE (u)-[:PARTICIPATES_IN]->(c)",
                {**key, "title": data["title"], "owner": data["owner_id"]},
            )
        ]
    if kind == "AssistantReplied":
        reply = decode_event(kind, e.schema_version, dict(data))
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
    return []


# --- reads (the gateway's neighbourhood queries) --------------------------------------------

AGENTS_OF_TASK_TREE = (
    "MATCH (t:Task)-[:SUBTASK_OF*0..10]->(root:Task {id: $id}) "
    "MATCH (t)-[:ASSIGNED_TO]->(a:Agent) "
    "RETURN DISTINCT a.id ORDER BY a.id"
)
TASKS_REFERENCING_DOCUMENT = (
    "MATCH (t:Task)-[:REFERENCES]->(d:Document {id: $id}) RETURN DISTINCT t.id ORDER BY t.id"
)
