"""Subscriptions over graphql-transport-ws, read from the event stream itself.

Each one follows the log from a sequence, so a client that passes the last sequence it saw
(`afterSequence`) gets every later event once, with no gap: what is stored is read back in
batches, then the gateway's one shared reader of the stream (`gateway.fanout`) hands it each new
event. A subscription that falls `fanout.QUEUE_LIMIT` events behind ends with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import cast
from uuid import UUID

import strawberry
from nats.aio.msg import Msg
from strawberry.scalars import JSON
from strawberry.types import Info

from domain.aggregates import TASK
from domain.task import Task
from gateway.context import GatewayContext
from gateway.errors import ErrorCode, GatewayError
from gateway.fanout import fanout_of
from gateway.log_types import ActorRef, Event
from gateway.permissions import Reader, SignedIn, check_read, may_read
from gateway.queries import EventFilter
from gateway.types import TaskStatus, parse_id, public
from projections.fold import FoldedAggregate
from schemas.envelope import EVENT_SUBJECT_PREFIX, RecordedEvent
from schemas.live import ReplyToken, live_conversation_subject


def event_of(recorded: RecordedEvent) -> Event:
    """A stored event as the GraphQL `Event` type."""
    e = recorded.envelope
    return Event(
        sequence=recorded.sequence,
        event_id=strawberry.ID(str(e.event_id)),
        event_type=e.event_type,
        schema_version=e.schema_version,
        aggregate_type=e.aggregate_type,
        aggregate_id=strawberry.ID(str(e.aggregate_id)),
        aggregate_version=e.aggregate_version,
        occurred_at=e.occurred_at,
        actor=ActorRef(id=e.actor.id, kind=e.actor.kind),
        command_id=e.command_id,
        correlation_id=e.correlation_id,
        causation_id=e.causation_id,
        reason=e.reason,
        data=JSON(public(dict(e.data))),
    )


def _subject(aggregate_type: str | None, aggregate_id: UUID | None, event_type: str | None) -> str:
    parts = (aggregate_type or "*", str(aggregate_id) if aggregate_id else "*", event_type or "*")
    return ".".join((EVENT_SUBJECT_PREFIX, *parts))


async def _start(context: GatewayContext, after_sequence: int | None) -> int:
    """Where to read from: after the client's last sequence, or from the next new event."""
    if after_sequence is None:
        return await context.services.store.last_sequence() + 1
    if after_sequence < 0:
        raise GatewayError(ErrorCode.VALIDATION, "afterSequence must be >= 0")
    return after_sequence + 1


@strawberry.type(description="A task changed: the event, and the task's state after it.")
class TaskUpdate:
    sequence: int
    event_type: str
    version: int
    status: TaskStatus
    task: JSON


@strawberry.type(
    description="A piece of an assistant reply: a streamed token, or (final) the whole message."
)
class ReplyChunk:
    message_id: strawberry.ID
    in_reply_to: strawberry.ID | None
    index: int | None
    token: str | None
    final: bool
    content: str | None = None
    citations: JSON | None = None
    sequence: int | None = None


class _live:
    """Count a subscription as live (the gauge clients and tests wait on) for the block.

    A slotted class rather than a generator-based context manager: it lives as long as the
    subscription, so its size counts per idle subscriber."""

    __slots__ = ("_gauge",)

    def __init__(self, context: GatewayContext, field: str) -> None:
        metrics = context.metrics
        self._gauge = metrics.live_subscriptions.labels(field) if metrics else None

    def __enter__(self) -> None:
        if self._gauge is not None:
            self._gauge.inc()

    def __exit__(self, *_: object) -> None:
        if self._gauge is not None:
            self._gauge.dec()


async def _chunks(
    chunks: asyncio.Queue[ReplyChunk], replies: asyncio.Task[None]
) -> AsyncGenerator[ReplyChunk, None]:
    """Chunks as they come, until the log reader ends (its failure raised to the client)."""
    getting: asyncio.Future[ReplyChunk] | None = None
    try:
        while True:
            getting = asyncio.ensure_future(chunks.get())
            done, _ = await asyncio.wait({getting, replies}, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                replies.result()
                return
            yield getting.result()
    finally:
        if getting is not None:
            getting.cancel()


async def _conversation_owner(context: GatewayContext, conversation_id: UUID) -> UUID | None:
    async for first in context.services.store.aggregate_events("conversation", conversation_id):
        owner = first.envelope.data.get("owner_id")
        return UUID(str(owner)) if owner else None
    return None


@strawberry.type
class Subscription:
    """Live views of the log."""

    @strawberry.subscription(
        permission_classes=[Reader],
        description="Events as they are appended, after a sequence (admins, auditors).",
    )
    async def events(
        self,
        info: Info[GatewayContext, None],
        filter: EventFilter | None = None,
        after_sequence: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        context = info.context
        wanted = filter or EventFilter()
        aggregate_id = parse_id(wanted.aggregate_id, "aggregateId") if wanted.aggregate_id else None
        subject = _subject(wanted.aggregate_type, aggregate_id, wanted.event_type)
        start = await _start(context, after_sequence)
        followed = fanout_of(context.services.store).follow(subject, start)
        with _live(context, "events"):
            async for recorded in followed:
                e = recorded.envelope
                if wanted.actor_id is not None and e.actor.id != wanted.actor_id:
                    continue
                if wanted.correlation_id is not None and e.correlation_id != wanted.correlation_id:
                    continue
                if wanted.since is not None and e.occurred_at < wanted.since:
                    continue
                if wanted.until is not None and e.occurred_at >= wanted.until:
                    continue
                yield event_of(recorded)

    @strawberry.subscription(
        permission_classes=[SignedIn],
        description="A task's every change after a sequence (0: its whole history).",
    )
    async def task_updated(
        self, info: Info[GatewayContext, None], id: strawberry.ID, after_sequence: int = 0
    ) -> AsyncGenerator[TaskUpdate, None]:
        context = info.context
        task_id = parse_id(id)
        principal = context.signed_in()
        if after_sequence < 0:
            raise GatewayError(ErrorCode.VALIDATION, "afterSequence must be >= 0")
        folded = FoldedAggregate(kind=TASK)
        subject = _subject("task", task_id, None)
        async for recorded in fanout_of(context.services.store).follow(subject, 1):
            folded.apply(recorded)
            state = cast(Task, folded.state)  # the task kind folds into task states
            if folded.version == 1:
                check_read(principal, state.owner_id)
            if recorded.sequence <= after_sequence:
                continue
            yield TaskUpdate(
                sequence=recorded.sequence,
                event_type=recorded.envelope.event_type,
                version=folded.version,
                status=TaskStatus(state.status),
                task=JSON(state.model_dump(mode="json")),
            )

    @strawberry.subscription(
        permission_classes=[SignedIn],
        description="Events of tasks after a sequence; a user gets only their own tasks'.",
    )
    async def tasks(
        self,
        info: Info[GatewayContext, None],
        owner_id: strawberry.ID | None = None,
        after_sequence: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        context = info.context
        principal = context.signed_in()
        owner = parse_id(owner_id, "ownerId") if owner_id else None
        if principal.role == "user":
            if owner is not None and owner != principal.user_id:
                raise GatewayError(ErrorCode.FORBIDDEN, "a user follows only their own tasks")
            owner = principal.user_id
        start = await _start(context, after_sequence)
        # A user's `owner` is themselves: every event the fan-out hands over is theirs to read.
        fanout = fanout_of(context.services.store)
        followed = fanout.follow(_subject("task", None, None), start, task_owner=owner)
        with _live(context, "tasks"):
            async for recorded in followed:
                if may_read(principal, await fanout.task_owner(recorded)):
                    yield event_of(recorded)

    @strawberry.subscription(
        permission_classes=[SignedIn],
        description="Assistant replies of a conversation: tokens live, then each final message.",
    )
    async def conversation_reply(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> AsyncGenerator[ReplyChunk, None]:
        context = info.context
        conversation_id = parse_id(id)
        principal = context.signed_in()
        owner = await _conversation_owner(context, conversation_id)
        if owner is None:
            raise GatewayError(
                ErrorCode.NOT_FOUND, f"conversation {conversation_id} does not exist"
            )
        check_read(principal, owner)
        chunks: asyncio.Queue[ReplyChunk] = asyncio.Queue()

        async def on_token(message: Msg) -> None:
            token = ReplyToken.model_validate_json(message.data)
            await chunks.put(
                ReplyChunk(
                    message_id=strawberry.ID(str(token.message_id)),
                    in_reply_to=strawberry.ID(str(token.in_reply_to)),
                    index=token.index,
                    token=token.token,
                    final=False,
                )
            )

        async def follow_replies(start: int) -> None:
            subject = _subject("conversation", conversation_id, "AssistantReplied")
            async for recorded in fanout_of(context.services.store).follow(subject, start):
                data = recorded.envelope.data
                await chunks.put(
                    ReplyChunk(
                        message_id=strawberry.ID(str(data["message_id"])),
                        in_reply_to=strawberry.ID(str(data["in_reply_to"])),
                        index=None,
                        token=None,
                        final=True,
                        content=str(data["content"]),
                        citations=JSON(data.get("citations", [])),
                        sequence=recorded.sequence,
                    )
                )

        nats = context.services.store.client
        live = await nats.subscribe(live_conversation_subject(conversation_id), cb=on_token)
        replies = asyncio.create_task(follow_replies(await _start(context, None)))
        try:
            await nats.flush()  # from here NATS delivers every token to us
            with _live(context, "conversationReply"):
                async with contextlib.aclosing(_chunks(chunks, replies)) as flowing:
                    async for chunk in flowing:
                        yield chunk
        finally:
            await live.unsubscribe()
            replies.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replies
