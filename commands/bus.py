"""The command bus: load, decide (pure), append atomically; on a conflict, load and decide again."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import structlog
from opentelemetry.trace import INVALID_SPAN, StatusCode, Tracer
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from uuid_utils.compat import uuid7

from commands.guard import Guard, allow_all
from commands.loading import LoadedAggregate, load_aggregate
from commands.uniqueness import Reservations, claims_of
from domain.aggregates import AggregateKind, kind_of
from domain.errors import DomainError
from eventstore.errors import ConcurrencyConflict
from eventstore.store import EventStore
from eventstore.trace_context import traces
from schemas.envelope import SYSTEM, Actor, EventEnvelope
from schemas.events import event_data, schema_version

log = structlog.get_logger(__name__)
_debug = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommandContext:
    """Who sends a command, why, and what it belongs to. `command_id` makes it idempotent."""

    command_id: str
    actor: Actor = SYSTEM
    reason: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    @classmethod
    def caused_by(cls, event: EventEnvelope, actor: Actor, purpose: str) -> CommandContext:
        """The context of a command an event triggers: same correlation, caused by the event.

        The command id derives from the event id and `purpose`, so handling a redelivered
        event sends the very same command, which the bus then answers without appending.
        """
        return cls(
            command_id=f"{event.event_id}.{purpose}",
            actor=actor,
            correlation_id=event.correlation_id,
            causation_id=str(event.event_id),
        )


@dataclass(frozen=True)
class CommandResult:
    """What a command did: the aggregate's new version and the last event's stream sequence.

    `duplicate` says the command had been handled before and this is that first outcome.
    """

    aggregate_type: str
    aggregate_id: UUID
    version: int
    sequence: int
    event_types: tuple[str, ...]
    duplicate: bool = False


@dataclass(frozen=True)
class BusPolicy:
    """How hard the bus tries and how much each aggregate remembers."""

    max_attempts: int = 8
    snapshot_every: int = 100
    remembered_commands: int = 1_000
    cached_aggregates: int = 10_000


_NO_SPAN = nullcontext(INVALID_SPAN)
"""Stands in for a span when nothing is traced: a no-op span still switches contexts."""


class CommandObserver(Protocol):
    """What the bus tells whoever counts its work (metrics): nothing here depends on it."""

    def finished(self, command: str, outcome: str, seconds: float) -> None:
        """A command ended: `ok`, `duplicate`, a domain error's code, or an error's class name."""

    def conflicted(self, command: str) -> None:
        """Another writer got there first: the command is decided again."""


class _Unobserved:
    def finished(self, command: str, outcome: str, seconds: float) -> None:
        return None

    def conflicted(self, command: str) -> None:
        return None


class CommandBus:
    """Runs commands against aggregates stored in the event store."""

    def __init__(
        self,
        store: EventStore,
        *,
        policy: BusPolicy | None = None,
        clock: Clock = utc_now,
        reservations: Reservations | None = None,
        observer: CommandObserver | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.tracer = tracer or store.tracer
        """Traces each command (the store's tracer unless told: one provider per process)."""
        self._tracing = traces(self.tracer)
        self.policy = policy or BusPolicy()
        self.clock = clock
        self.reservations = reservations or Reservations(store)
        self.observer: CommandObserver = observer or _Unobserved()
        # Aggregates as this process last saw them. Only a hint: every append is checked against
        # the log's real last sequence, so a stale entry costs a conflict and a reload, never a
        # wrong write.
        self._cache: OrderedDict[tuple[str, UUID], LoadedAggregate] = OrderedDict()

    async def execute(
        self, command: BaseModel, context: CommandContext, *, guard: Guard = allow_all
    ) -> CommandResult:
        """Apply a command; raises a domain error, `ConcurrencyConflict` or a store error.

        `guard` sees the very state the command is decided on (so no other writer can slip in
        between the check and the append) and raises `Forbidden` to refuse it.
        """
        name = type(command).__name__
        started = time.perf_counter()
        outcome = "error"
        with (
            self.tracer.start_as_current_span(
                f"command {name}", record_exception=False, set_status_on_exception=False
            )
            if self._tracing
            else _NO_SPAN
        ) as span:
            try:
                result = await self._reserve_and_execute(command, context, guard)
                outcome = "duplicate" if result.duplicate else "ok"
                return result
            except DomainError as error:
                outcome = error.code  # an answer, not a failure of the platform
                raise
            except Exception as error:
                outcome = type(error).__name__
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, outcome)
                raise
            finally:
                elapsed = time.perf_counter() - started
                self.observer.finished(name, outcome, elapsed)
                if span.is_recording():
                    span.set_attributes(
                        {
                            "sutazai.command": name,
                            "sutazai.command_id": context.command_id,
                            "sutazai.correlation_id": context.correlation_id or "",
                            "sutazai.outcome": outcome,
                        }
                    )

    async def _reserve_and_execute(
        self, command: BaseModel, context: CommandContext, guard: Guard
    ) -> CommandResult:
        kind = kind_of(command)
        claims = claims_of(command)
        if not claims:
            return await self._execute(kind, command, context, guard)
        reserved = await self.reservations.reserve(claims, kind.name, kind.target(command))
        try:
            return await self._execute(kind, command, context, guard)
        except BaseException:
            await self.reservations.release(reserved)
            raise

    async def _execute(
        self, kind: AggregateKind, command: BaseModel, context: CommandContext, guard: Guard
    ) -> CommandResult:
        try:
            # The common case, a first try that lands, skips the retry machinery's overhead.
            return await self._attempt(kind, command, context, guard, optimistic=True)
        except ConcurrencyConflict:
            self.observer.conflicted(type(command).__name__)
            if self.policy.max_attempts <= 1:
                raise
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ConcurrencyConflict),
            stop=stop_after_attempt(self.policy.max_attempts - 1),
            # Jitter spreads racing writers apart so that the next round has a winner.
            wait=wait_random_exponential(multiplier=0.005, max=0.25),
            before_sleep=lambda _: self.observer.conflicted(type(command).__name__),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(kind, command, context, guard, optimistic=False)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _start_from(
        self, kind: AggregateKind, aggregate_id: UUID, command: BaseModel, *, optimistic: bool
    ) -> tuple[LoadedAggregate, bool]:
        """The aggregate to decide on, and whether it is a guess (cached, or assumed new)."""
        key = (kind.name, aggregate_id)
        if optimistic:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached.copy(), True
            if isinstance(command, kind.creation):
                # A creation names a new id: assume nothing is stored (the append's expected
                # sequence 0 checks it) and spare the round trips of a load.
                return LoadedAggregate(kind=kind, aggregate_id=aggregate_id), True
        loaded = await load_aggregate(self.store, kind, aggregate_id)
        self._keep(loaded)
        return loaded.copy(), False

    def _keep(self, loaded: LoadedAggregate) -> None:
        key = (loaded.kind.name, loaded.aggregate_id)
        current = self._cache.get(key)
        if current is not None and current.sequence > loaded.sequence:
            return
        loaded.forget_old_commands(self.policy.remembered_commands)
        self._cache[key] = loaded
        self._cache.move_to_end(key)
        while len(self._cache) > self.policy.cached_aggregates:
            self._cache.popitem(last=False)

    async def _attempt(
        self,
        kind: AggregateKind,
        command: BaseModel,
        context: CommandContext,
        guard: Guard,
        *,
        optimistic: bool,
    ) -> CommandResult:
        aggregate_id = kind.target(command)
        loaded, guessed = await self._start_from(kind, aggregate_id, command, optimistic=optimistic)
        try:
            guard(loaded.state)
            if context.command_id in loaded.commands:
                return self._remembered(loaded, context.command_id)
            events = list(kind.decide(loaded.state, command))
        except DomainError:
            if not guessed:
                raise
            # A guess may be stale: refuse only what the log's own state refuses.
            loaded, _ = await self._start_from(kind, aggregate_id, command, optimistic=False)
            guard(loaded.state)
            if context.command_id in loaded.commands:
                return self._remembered(loaded, context.command_id)
            events = list(kind.decide(loaded.state, command))
        if not events:
            # Nothing to change (a repeated heartbeat, say): a success that appends nothing.
            return CommandResult(kind.name, aggregate_id, loaded.version, loaded.sequence, ())
        envelopes = self._envelopes(kind, aggregate_id, loaded.version, events, context)
        try:
            appended = await self.store.append(envelopes, expected_sequence=loaded.sequence)
        except ConcurrencyConflict:
            self._cache.pop((kind.name, aggregate_id), None)
            raise
        if appended.duplicate:
            # The server had this command's events already (a retried append whose first ack
            # was lost): answer with what the log says the command did.
            reloaded = await load_aggregate(self.store, kind, aggregate_id)
            if context.command_id in reloaded.commands:
                return self._remembered(reloaded, context.command_id)
            raise ConcurrencyConflict(kind.name, loaded.sequence, "duplicate of an unseen append")
        result = CommandResult(
            aggregate_type=kind.name,
            aggregate_id=aggregate_id,
            version=envelopes[-1].aggregate_version,
            sequence=appended.last_sequence,
            event_types=tuple(e.event_type for e in envelopes),
        )
        previous_version = loaded.version
        loaded.advance(events, envelopes, appended.first_sequence)
        self._keep(loaded)
        await self._maybe_snapshot(loaded, previous_version)
        if _debug.isEnabledFor(logging.DEBUG):  # building the event costs more than the check
            log.debug(
                "command.applied",
                command=type(command).__name__,
                command_id=context.command_id,
                aggregate=kind.name,
                aggregate_id=str(aggregate_id),
                version=result.version,
                sequence=result.sequence,
            )
        return result

    def _envelopes(
        self,
        kind: AggregateKind,
        aggregate_id: UUID,
        version: int,
        events: Sequence[BaseModel],
        context: CommandContext,
    ) -> list[EventEnvelope]:
        occurred_at = self.clock()
        return [
            EventEnvelope(
                event_id=uuid7(),
                event_type=type(event).__name__,
                schema_version=schema_version(type(event)),
                aggregate_type=kind.name,
                aggregate_id=aggregate_id,
                aggregate_version=version + offset,
                occurred_at=occurred_at,
                actor=context.actor,
                command_id=context.command_id,
                correlation_id=context.correlation_id or context.command_id,
                causation_id=context.causation_id,
                reason=context.reason,
                data=event_data(event),
            )
            for offset, event in enumerate(events, start=1)
        ]

    @staticmethod
    def _remembered(loaded: LoadedAggregate, command_id: str) -> CommandResult:
        outcome = loaded.commands[command_id]
        return CommandResult(
            aggregate_type=loaded.kind.name,
            aggregate_id=loaded.aggregate_id,
            version=outcome.version,
            sequence=outcome.sequence,
            event_types=outcome.event_types,
            duplicate=True,
        )

    async def _maybe_snapshot(self, loaded: LoadedAggregate, previous_version: int) -> None:
        every = self.policy.snapshot_every
        if every <= 0 or loaded.version // every == previous_version // every:
            return
        try:
            await self.store.snapshots.put(loaded.snapshot(self.policy.remembered_commands))
        except Exception as error:  # a snapshot is an optimisation: the append stands
            log.warning("snapshot.failed", aggregate=loaded.kind.name, error=repr(error))
