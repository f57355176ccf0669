"""What every resolver receives: the services the composition root built, and who is asking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Protocol
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher
from pydantic import BaseModel, JsonValue
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from commands.dispatch import CommandDispatcher
from eventstore.store import EventStore
from gateway import views
from gateway.auth import Principal, Tokens
from gateway.errors import unauthenticated
from gateway.metrics import GatewayMetrics
from schemas.envelope import Actor


class AuditedChange(Protocol):
    """One event of an aggregate's history, as the audit reads it from the log."""

    @property
    def version(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def event_type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def actor(self) -> Actor: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def command_id(self) -> str: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def data(self) -> dict[str, JsonValue]: ...


class AuditedState(Protocol):
    """An aggregate folded up to a point, as the audit reads it from the log."""

    @property
    def state(self) -> BaseModel | None: ...
    @property
    def version(self) -> int: ...
    @property
    def occurred_at(self) -> datetime | None: ...


class AuditLog(Protocol):
    """Audit answers folded from the log itself (the projections' audit functions)."""

    async def history(self, aggregate_type: str, aggregate_id: UUID) -> Sequence[AuditedChange]:
        """Every change of an aggregate, oldest first."""

    async def state_at(
        self,
        aggregate_type: str,
        aggregate_id: UUID,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> AuditedState:
        """The aggregate as it was at a version or a time."""


class GraphReader(Protocol):
    """Neighbourhood questions the graph projection answers."""

    async def agents_of_task_tree(self, task_id: UUID) -> list[UUID]:
        """Agents that worked on a task or any of its subtasks."""

    async def tasks_referencing_document(self, document_id: UUID) -> list[UUID]:
        """Tasks that reference a document."""


class FoundChunk(Protocol):
    """A chunk of a document that a search found."""

    @property
    def document_id(self) -> UUID: ...
    @property
    def chunk_index(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def score(self) -> float: ...


class DocumentSearch(Protocol):
    """Nearest document chunks to a text (Qdrant); raises ConnectionError when it cannot."""

    async def search(self, query: str, *, k: int, owner_id: UUID | None) -> Sequence[FoundChunk]:
        """The chunks nearest to `query`, best first."""


WaitForProjection = Callable[[str, int], Awaitable[bool]]
"""Waits (bounded) until a read model has applied a sequence; False if it did not in time."""


@dataclass(frozen=True)
class GatewayServices:
    """Built once by the composition root and shared by every request."""

    postgres: asyncpg.Pool
    store: EventStore
    commands: CommandDispatcher
    tokens: Tokens
    passwords: PasswordHasher
    nobody_hash: str
    """A hash of nothing anyone knows, checked when a login names no user."""
    audit: AuditLog
    graph: GraphReader
    documents: DocumentSearch
    wait_for_projection: WaitForProjection


class Loaders:
    """Per-request dataloaders, so nested lists cost one query per level, not one per item.

    Each is made on first use: a subscription's context lives as long as its websocket, and most
    never load a nested list (bench/subscriptions.py counts the bytes of an idle subscriber).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @cached_property
    def subtasks(self) -> DataLoader[UUID, list[asyncpg.Record]]:
        """A task's subtasks."""
        return DataLoader(lambda ids: views.subtasks_of(self._pool, ids))

    @cached_property
    def task_messages(self) -> DataLoader[UUID, list[asyncpg.Record]]:
        """The agent messages about a task."""
        return DataLoader(lambda ids: views.messages_of_tasks(self._pool, ids))

    @cached_property
    def conversation_messages(self) -> DataLoader[UUID, list[asyncpg.Record]]:
        """A conversation's messages."""
        return DataLoader(lambda ids: views.messages_of_conversations(self._pool, ids))


@dataclass
class GatewayContext:
    """One request's context (one websocket's, for subscriptions)."""

    services: GatewayServices
    request: Request | WebSocket
    principal: Principal | None
    loaders: Loaders
    connection_params: dict[str, JsonValue] | None = None
    """What a websocket client sent with `connection_init` (Strawberry sets it)."""
    response: Response | WebSocket | None = None
    metrics: GatewayMetrics | None = None

    def signed_in(self) -> Principal:
        """Who is asking; UNAUTHENTICATED when nobody signed in."""
        if self.principal is None:
            raise unauthenticated()
        return self.principal
