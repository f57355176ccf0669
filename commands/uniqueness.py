"""Values unique across aggregates (user email and username, agent name), reserved in KV.

A reservation is written with an expected revision (create = "no such key yet") before the
aggregate's first event is appended, and released if that append fails. A reservation whose
owner never got an event (a writer that died between the two steps) is taken over after a
grace period, so a crash cannot lock a value forever.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from domain import agent, user
from domain.errors import ValueTaken
from eventstore.errors import StoreUnavailable
from eventstore.store import EventStore
from eventstore.streams import UNIQUE_BUCKET


@dataclass(frozen=True)
class Claim:
    """One unique value a command wants."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        """`<kind>.<value-hash>`: the value itself never appears in a key."""
        digest = hashlib.sha256(self.value.casefold().encode()).hexdigest()[:40]
        return f"{self.kind}.{digest}"


CLAIMS: dict[type[BaseModel], Callable[[BaseModel], list[Claim]]] = {
    user.RegisterUser: lambda c: [
        Claim("user_email", str(getattr(c, "email"))),  # noqa: B009 -- typed per command
        Claim("user_username", str(getattr(c, "username"))),  # noqa: B009
    ],
    agent.RegisterAgent: lambda c: [Claim("agent_name", str(getattr(c, "name")))],  # noqa: B009
}


def claims_of(command: BaseModel) -> list[Claim]:
    """The unique values a command claims (none for most)."""
    claim = CLAIMS.get(type(command))
    return claim(command) if claim else []


@dataclass(frozen=True)
class Reserved:
    """A reservation this command made (and must release if its append fails)."""

    key: str
    revision: int


class Reservations:
    """Reserve and release unique values in the `sutazai_unique` bucket."""

    def __init__(self, store: EventStore, *, grace_seconds: float = 30.0) -> None:
        self._store = store
        self._grace = grace_seconds

    async def _kv(self) -> KeyValue:
        return await self._store.bucket(UNIQUE_BUCKET)

    async def reserve(
        self, claims: Sequence[Claim], aggregate_type: str, aggregate_id: UUID
    ) -> list[Reserved]:
        """Hold every claimed value for this aggregate, or hold none and raise ValueTaken."""
        owner = f"{aggregate_type}:{aggregate_id}"
        made: list[Reserved] = []
        try:
            for claim in claims:
                reserved = await self._reserve_one(claim, owner)
                if reserved is not None:
                    made.append(reserved)
        except BaseException:
            await self.release(made)
            raise
        return made

    async def _reserve_one(self, claim: Claim, owner: str) -> Reserved | None:
        kv = await self._kv()
        value = json.dumps({"owner": owner, "at": time.time()}).encode()
        try:
            with self._store.watch.bounded("a uniqueness reservation"):
                try:
                    return Reserved(claim.key, await kv.create(claim.key, value))
                except KeyWrongLastSequenceError:
                    entry = await kv.get(claim.key)
        except nats.errors.Error as error:
            raise StoreUnavailable(f"reservation failed: {error!r}") from error
        holder = json.loads(entry.value or b"{}")
        if holder.get("owner") == owner:
            return None  # ours already: the same command, tried again
        if entry.revision is not None and await self._abandoned(holder):
            try:
                return Reserved(claim.key, await kv.update(claim.key, value, last=entry.revision))
            except KeyWrongLastSequenceError:
                pass  # someone else took it over first
        raise ValueTaken(claim.kind, claim.value)

    async def _abandoned(self, holder: dict[str, object]) -> bool:
        """A holder that never got its first event, past the grace period."""
        at = holder.get("at")
        if not isinstance(at, int | float) or time.time() - at < self._grace:
            return False
        aggregate_type, _, aggregate_id = str(holder.get("owner", "")).partition(":")
        try:
            async for _ in self._store.aggregate_events(aggregate_type, UUID(aggregate_id)):
                return False
        except ValueError:
            return True
        return True

    async def release(self, reserved: Sequence[Reserved]) -> None:
        """Give reservations back (only if still at the revision we wrote)."""
        if not reserved:
            return
        kv = await self._kv()
        for item in reserved:
            try:
                await kv.delete(item.key, last=item.revision)
            except (KeyWrongLastSequenceError, KeyNotFoundError, nats.errors.Error):
                # Changed since, or the server is gone: an orphan is taken over after the grace.
                continue
