"""Queries: read models only (and the log itself for audit). One query, one function."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
import strawberry
from pydantic import BaseModel, JsonValue
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway import views
from gateway.context import GatewayContext
from gateway.errors import ErrorCode, GatewayError
from gateway.log_types import ActorRef, ChangeObject, Event, EventPage, StateAtObject
from gateway.permissions import Reader, SignedIn, check_read
from gateway.rows import json_value
from gateway.types import (
    PRIORITY_DESCRIPTION,
    AgentObject,
    AgentStatus,
    ConversationObject,
    ConversationPage,
    DocumentHit,
    DocumentObject,
    DocumentPage,
    Neighbourhood,
    TaskObject,
    TaskPage,
    TaskStatus,
    UserObject,
    UserPage,
    check_priority,
    decode_cursor,
    encode_cursor,
    parse_id,
    public,
)
from schemas.specs import AGENT, CONVERSATION, DOCUMENT, TASK, USER, AggregateSpec

MAX_PAGE = 200
AUDITABLE = ("user", "agent", "task", "agent_message", "document", "conversation", "model_call")


def _first(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise GatewayError(ErrorCode.VALIDATION, f"first must be 1 to {MAX_PAGE}", field="first")
    return first


def _next(rows: list[asyncpg.Record], first: int, spec: AggregateSpec) -> str | None:
    """The cursor after a full page of `spec`'s rows; None after the last page."""
    if len(rows) < first:
        return None
    return encode_cursor(rows[-1]["created_at"], rows[-1][spec.table.id_column])


def _own_scope(context: GatewayContext, owner_id: strawberry.ID | None) -> UUID | None:
    """The owner a list is limited to: a user's own things, whatever they ask for."""
    principal = context.signed_in()
    if principal.role == "user":
        if owner_id is not None and parse_id(owner_id, "ownerId") != principal.user_id:
            raise GatewayError(ErrorCode.FORBIDDEN, "a user lists only their own things")
        return principal.user_id
    return parse_id(owner_id, "ownerId") if owner_id is not None else None


@strawberry.input(description="Which tasks to list.")
class TaskFilter:
    status: TaskStatus | None = None
    priority: int | None = strawberry.field(default=None, description=PRIORITY_DESCRIPTION)
    agent_id: strawberry.ID | None = None
    owner_id: strawberry.ID | None = None


@strawberry.input(description="Which events to find in the log.")
class EventFilter:
    event_type: str | None = None
    actor_id: str | None = None
    correlation_id: str | None = None
    aggregate_type: str | None = None
    aggregate_id: strawberry.ID | None = None
    since: datetime | None = None
    until: datetime | None = None


def event_from_row(row: asyncpg.Record) -> Event:
    """An `event_log` row as a GraphQL event."""
    return Event(
        sequence=row["sequence"],
        event_id=strawberry.ID(str(row["event_id"])),
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=strawberry.ID(str(row["aggregate_id"])),
        aggregate_version=row["aggregate_version"],
        occurred_at=row["occurred_at"],
        actor=ActorRef(id=row["actor_id"], kind=row["actor_kind"]),
        command_id=row["command_id"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        reason=row["reason"],
        data=JSON(public(json_value(row["data"]))),
    )


async def _caught_up(context: GatewayContext, read_model: str, min_sequence: int | None) -> None:
    """Read-your-writes: wait (bounded) until the read model has applied `min_sequence`."""
    if min_sequence is None or min_sequence <= 0:
        return
    if not await context.services.wait_for_projection(read_model, min_sequence):
        raise GatewayError(
            ErrorCode.UNAVAILABLE,
            f"the {read_model} read model has not reached sequence {min_sequence} yet; retry",
        )


async def _readable_row(
    context: GatewayContext,
    spec: AggregateSpec,
    id: strawberry.ID,
    min_sequence: int | None,
) -> asyncpg.Record | None:
    """An owned aggregate's row once its read model has applied `min_sequence`: None when there
    is none, FORBIDDEN when the signed-in user may not read its owner's things."""
    await _caught_up(context, spec.table.table, min_sequence)
    row = await views.row_by_id(context.services.postgres, spec, parse_id(id))
    if row is not None:
        check_read(context.signed_in(), row["owner_id"])
    return row


async def _own_page(
    context: GatewayContext,
    spec: AggregateSpec,
    first: int,
    after: str | None,
    min_sequence: int | None,
) -> list[asyncpg.Record]:
    """A page of an owned aggregate's rows, newest first, once its read model has applied
    `min_sequence`: a user's own rows, everyone's for the other roles."""
    await _caught_up(context, spec.table.table, min_sequence)
    return await views.owned_page(
        context.services.postgres,
        spec,
        owner_id=_own_scope(context, None),
        after=decode_cursor(after),
        first=_first(first),
    )


async def _check_audit_access(context: GatewayContext, aggregate_type: str, id: UUID) -> None:
    if aggregate_type not in AUDITABLE:
        raise GatewayError(
            ErrorCode.VALIDATION,
            f"no aggregate type {aggregate_type!r}; known: {', '.join(AUDITABLE)}",
            field="aggregateType",
        )
    principal = context.signed_in()
    if principal.reads_everything:
        return
    if aggregate_type == "user":
        if id != principal.user_id:
            raise GatewayError(ErrorCode.FORBIDDEN, "only admins and auditors audit other users")
        return
    if principal.role == "agent":
        return
    if aggregate_type not in ("task", "document", "conversation"):
        raise GatewayError(ErrorCode.FORBIDDEN, "a user audits only their own things")
    check_read(principal, await views.owner_of(context.services.postgres, aggregate_type, id))


@strawberry.type
class Query:
    """What the gateway answers."""

    @strawberry.field(permission_classes=[SignedIn], description="The signed-in user.")
    async def me(self, info: Info[GatewayContext, None]) -> UserObject | None:
        context = info.context
        row = await views.row_by_id(context.services.postgres, USER, context.signed_in().user_id)
        return UserObject.from_row(row) if row else None

    @strawberry.field(permission_classes=[Reader], description="Every user (admins, auditors).")
    async def users(
        self, info: Info[GatewayContext, None], first: int = 50, after: str | None = None
    ) -> UserPage:
        rows = await views.users_page(
            info.context.services.postgres, after=decode_cursor(after), first=_first(first)
        )
        return UserPage(
            items=[UserObject.from_row(r) for r in rows], next_cursor=_next(rows, first, USER)
        )

    @strawberry.field(permission_classes=[SignedIn], description="Agents, by name.")
    async def agents(
        self, info: Info[GatewayContext, None], status: AgentStatus | None = None
    ) -> list[AgentObject]:
        rows = await views.agents_list(
            info.context.services.postgres, status=status.value if status else None
        )
        return [AgentObject.from_row(r) for r in rows]

    @strawberry.field(permission_classes=[SignedIn], description="One agent.")
    async def agent(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> AgentObject | None:
        row = await views.row_by_id(info.context.services.postgres, AGENT, parse_id(id))
        return AgentObject.from_row(row) if row else None

    @strawberry.field(permission_classes=[SignedIn], description="One task, if yours to see.")
    async def task(
        self, info: Info[GatewayContext, None], id: strawberry.ID, min_sequence: int | None = None
    ) -> TaskObject | None:
        row = await _readable_row(info.context, TASK, id, min_sequence)
        return TaskObject.from_row(row) if row else None

    @strawberry.field(
        permission_classes=[SignedIn], description="Tasks newest first; a user sees their own."
    )
    async def tasks(
        self,
        info: Info[GatewayContext, None],
        filter: TaskFilter | None = None,
        first: int = 20,
        after: str | None = None,
        min_sequence: int | None = None,
    ) -> TaskPage:
        context = info.context
        await _caught_up(context, TASK.table.table, min_sequence)
        wanted = filter or TaskFilter()
        rows = await views.tasks_page(
            context.services.postgres,
            status=wanted.status.value if wanted.status else None,
            priority=check_priority(wanted.priority) if wanted.priority is not None else None,
            agent_id=parse_id(wanted.agent_id, "agentId") if wanted.agent_id else None,
            owner_id=_own_scope(context, wanted.owner_id),
            after=decode_cursor(after),
            first=_first(first),
        )
        return TaskPage(
            items=[TaskObject.from_row(r) for r in rows], next_cursor=_next(rows, first, TASK)
        )

    @strawberry.field(permission_classes=[SignedIn], description="Documents; a user's own.")
    async def documents(
        self,
        info: Info[GatewayContext, None],
        first: int = 20,
        after: str | None = None,
        min_sequence: int | None = None,
    ) -> DocumentPage:
        rows = await _own_page(info.context, DOCUMENT, first, after, min_sequence)
        return DocumentPage(
            items=[DocumentObject.from_row(r) for r in rows],
            next_cursor=_next(rows, first, DOCUMENT),
        )

    @strawberry.field(permission_classes=[SignedIn], description="One document, if yours.")
    async def document(
        self, info: Info[GatewayContext, None], id: strawberry.ID, min_sequence: int | None = None
    ) -> DocumentObject | None:
        row = await _readable_row(info.context, DOCUMENT, id, min_sequence)
        return DocumentObject.from_row(row) if row else None

    @strawberry.field(permission_classes=[SignedIn], description="Conversations; a user's own.")
    async def conversations(
        self,
        info: Info[GatewayContext, None],
        first: int = 20,
        after: str | None = None,
        min_sequence: int | None = None,
    ) -> ConversationPage:
        rows = await _own_page(info.context, CONVERSATION, first, after, min_sequence)
        return ConversationPage(
            items=[ConversationObject.from_row(r) for r in rows],
            next_cursor=_next(rows, first, CONVERSATION),
        )

    @strawberry.field(permission_classes=[SignedIn], description="One conversation, if yours.")
    async def conversation(
        self, info: Info[GatewayContext, None], id: strawberry.ID, min_sequence: int | None = None
    ) -> ConversationObject | None:
        row = await _readable_row(info.context, CONVERSATION, id, min_sequence)
        return ConversationObject.from_row(row) if row else None

    @strawberry.field(
        permission_classes=[SignedIn],
        description="Document chunks nearest in meaning to `query`; a user searches their own.",
    )
    async def search_documents(
        self, info: Info[GatewayContext, None], query: str, k: int = 5
    ) -> list[DocumentHit]:
        context = info.context
        if not 1 <= k <= 50:
            raise GatewayError(ErrorCode.VALIDATION, "k must be 1 to 50", field="k")
        if not query.strip() or len(query) > 2_000:
            raise GatewayError(ErrorCode.VALIDATION, "query must be 1 to 2000 characters")
        hits = await context.services.documents.search(
            query, k=k, owner_id=_own_scope(context, None)
        )
        return [
            DocumentHit(
                document_id=strawberry.ID(str(hit.document_id)),
                chunk_index=hit.chunk_index,
                title=hit.title,
                text=hit.text,
                score=hit.score,
            )
            for hit in hits
        ]

    @strawberry.field(
        permission_classes=[SignedIn],
        description="Every change of an aggregate, from the log: who, when, why, command.",
    )
    async def history(
        self, info: Info[GatewayContext, None], aggregate_type: str, id: strawberry.ID
    ) -> list[ChangeObject]:
        context = info.context
        aggregate_id = parse_id(id)
        await _check_audit_access(context, aggregate_type, aggregate_id)
        changes = await context.services.audit.history(aggregate_type, aggregate_id)
        return [
            ChangeObject(
                version=c.version,
                sequence=c.sequence,
                event_type=c.event_type,
                occurred_at=c.occurred_at,
                actor=ActorRef(id=c.actor.id, kind=c.actor.kind),
                reason=c.reason,
                command_id=c.command_id,
                correlation_id=c.correlation_id,
                causation_id=c.causation_id,
                data=JSON(public(c.data)),
            )
            for c in changes
        ]

    @strawberry.field(
        permission_classes=[SignedIn],
        description="An aggregate as it was at a version or a time, folded from the log.",
    )
    async def state_at(
        self,
        info: Info[GatewayContext, None],
        aggregate_type: str,
        id: strawberry.ID,
        version: int | None = None,
        time: datetime | None = None,
    ) -> StateAtObject:
        context = info.context
        aggregate_id = parse_id(id)
        await _check_audit_access(context, aggregate_type, aggregate_id)
        if time is not None and time.tzinfo is None:
            raise GatewayError(ErrorCode.VALIDATION, "time needs a UTC offset", field="time")
        found = await context.services.audit.state_at(
            aggregate_type, aggregate_id, version=version, at=time
        )
        state = found.state
        return StateAtObject(
            aggregate_type=aggregate_type,
            aggregate_id=strawberry.ID(str(aggregate_id)),
            version=found.version,
            occurred_at=found.occurred_at,
            state=JSON(_public_state(state)) if isinstance(state, BaseModel) else None,
        )

    @strawberry.field(
        permission_classes=[Reader], description="Search the event log (admins, auditors)."
    )
    async def events(
        self,
        info: Info[GatewayContext, None],
        filter: EventFilter | None = None,
        first: int = 50,
        after_sequence: int = 0,
    ) -> EventPage:
        wanted = filter or EventFilter()
        rows = await views.events_page(
            info.context.services.postgres,
            event_type=wanted.event_type,
            actor_id=wanted.actor_id,
            correlation_id=wanted.correlation_id,
            aggregate_type=wanted.aggregate_type,
            aggregate_id=parse_id(wanted.aggregate_id, "aggregateId")
            if wanted.aggregate_id
            else None,
            since=wanted.since,
            until=wanted.until,
            after_sequence=after_sequence,
            first=_first(first),
        )
        return EventPage(
            items=[event_from_row(r) for r in rows],
            next_after_sequence=rows[-1]["sequence"] if len(rows) == first else None,
        )

    @strawberry.field(
        permission_classes=[Reader],
        description="From the graph: agents that worked on a task tree, tasks citing a document.",
    )
    async def graph(
        self,
        info: Info[GatewayContext, None],
        task_id: strawberry.ID | None = None,
        document_id: strawberry.ID | None = None,
    ) -> Neighbourhood:
        graph = info.context.services.graph
        agents = await graph.agents_of_task_tree(parse_id(task_id, "taskId")) if task_id else []
        tasks = (
            await graph.tasks_referencing_document(parse_id(document_id, "documentId"))
            if document_id
            else []
        )
        return Neighbourhood(
            agent_ids=[strawberry.ID(str(a)) for a in agents],
            task_ids=[strawberry.ID(str(t)) for t in tasks],
        )


def _public_state(state: BaseModel) -> dict[str, JsonValue]:
    """A state for clients: never a password hash."""
    dumped: dict[str, JsonValue] = state.model_dump(mode="json")
    return public(dumped)
