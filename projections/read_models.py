"""The Postgres read models of docs/architecture.md §5, one per aggregate, plus the event log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from domain.agent import Agent
from domain.agent_message import AgentMessage
from domain.aggregates import AGENT, AGENT_MESSAGE, CONVERSATION, DOCUMENT, TASK, USER
from domain.conversation import Conversation
from domain.document import Document
from domain.task import Task
from domain.user import User
from projections.aggregate_tables import AggregateTable, AggregateTableProjector, as_json
from projections.event_log import EventLogProjector
from projections.runtime import Connection, Projector
from projections.task_rows import task_row_fold


def _task(task: Task) -> dict[str, Any]:
    return {
        "owner_id": task.owner_id,
        "task_type": task.task_type,
        "priority": task.priority,
        "status": task.status.value,
        "payload": as_json(task.payload),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "agent_id": task.agent_id,
        "progress": task.progress,
        "result": as_json(task.result),
        "error": as_json(task.error),
        "parent_id": task.parent_id,
        "subtask_ids": list(task.subtask_ids),
        "document_ids": list(task.document_ids),
        "deadline_seconds": task.deadline_seconds,
    }


def _user(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "username": user.username,
        "role": user.role.value,
        "active": user.active,
    }


def _agent(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "kind": agent.kind.value,
        "capabilities": list(agent.capabilities),
        "model": agent.model,
        "status": agent.status.value,
    }


def _agent_message(message: AgentMessage) -> dict[str, Any]:
    return {
        "source_agent_id": message.source_agent_id,
        "target_agent_id": message.target_agent_id,
        "task_id": message.task_id,
        "message_type": message.message_type.value,
        "payload": as_json(message.payload),
        "acknowledged": message.acknowledged,
    }


def _document(document: Document) -> dict[str, Any]:
    return {
        "owner_id": document.owner_id,
        "title": document.title,
        "content_hash": document.content_hash,
        "content_size": document.content_size,
        "inline_content": document.content is not None,
        "metadata": as_json(document.metadata),
        "status": document.status.value,
        "chunk_count": document.chunk_count,
        "embedding_model": document.embedding_model,
        "error": as_json(document.error),
    }


def _conversation(conversation: Conversation) -> dict[str, Any]:
    return {
        "owner_id": conversation.owner_id,
        "title": conversation.title,
        "model": conversation.model,
        "closed": conversation.closed,
        "message_count": len(conversation.messages),
    }


async def _conversation_messages(
    connection: Connection, states: list[BaseModel], tables: Mapping[str, str]
) -> None:
    """Messages are only ever appended: write the ones past what each conversation holds."""
    conversations = [state for state in states if isinstance(state, Conversation)]
    target = tables["conversation_messages"]
    held = {
        row["conversation_id"]: row["count"]
        for row in await connection.fetch(
            f"SELECT conversation_id, count(*) AS count FROM {target}"
            " WHERE conversation_id = ANY($1::uuid[]) GROUP BY conversation_id",
            [c.conversation_id for c in conversations],
        )
    }
    schema, _, table = target.rpartition(".")
    await connection.copy_records_to_table(
        table,
        schema_name=schema or None,
        columns=(
            "conversation_id",
            "position",
            "message_id",
            "role",
            "content",
            "model",
            "in_reply_to",
            "citations",
        ),
        records=[
            (
                c.conversation_id,
                position,
                m.message_id,
                m.role.value,
                m.content,
                m.model,
                m.in_reply_to,
                as_json([citation.model_dump(mode="json") for citation in m.citations]),
            )
            for c in conversations
            for position, m in enumerate(c.messages)
            if position >= held.get(c.conversation_id, 0)
        ],
    )


_COLUMNS = {
    "tasks": (
        "owner_id", "task_type", "priority", "status", "payload", "attempts", "max_attempts",
        "agent_id", "progress", "result", "error", "parent_id", "subtask_ids", "document_ids",
        "deadline_seconds",
    ),
    "users": ("email", "username", "role", "active"),
    "agents": ("name", "kind", "capabilities", "model", "status"),
    "agent_messages": (
        "source_agent_id", "target_agent_id", "task_id", "message_type", "payload",
        "acknowledged",
    ),
    "documents": (
        "owner_id", "title", "content_hash", "content_size", "inline_content", "metadata",
        "status", "chunk_count", "embedding_model", "error",
    ),
    "conversations": ("owner_id", "title", "model", "closed", "message_count"),
}  # fmt: skip

TABLES = (
    AggregateTable(USER, "users", "user_id", _COLUMNS["users"], _user),
    AggregateTable(AGENT, "agents", "agent_id", _COLUMNS["agents"], _agent),
    AggregateTable(TASK, "tasks", "task_id", _COLUMNS["tasks"], _task, fast_fold=task_row_fold),
    AggregateTable(
        AGENT_MESSAGE, "agent_messages", "message_id", _COLUMNS["agent_messages"], _agent_message
    ),
    AggregateTable(DOCUMENT, "documents", "document_id", _COLUMNS["documents"], _document),
    AggregateTable(
        CONVERSATION,
        "conversations",
        "conversation_id",
        _COLUMNS["conversations"],
        _conversation,
        after_write=_conversation_messages,
        child_tables=("conversation_messages",),
    ),
)


def postgres_projectors() -> list[Projector]:
    """Every Postgres projector the platform runs."""
    return [EventLogProjector(), *(AggregateTableProjector(table) for table in TABLES)]


def projector_named(name: str) -> Projector:
    """One projector by name (`tasks`, `event_log`, …)."""
    for projector in postgres_projectors():
        if projector.name == name:
            return projector
    known = ", ".join(p.name for p in postgres_projectors())
    raise LookupError(f"no projector {name!r}; known: {known}")
