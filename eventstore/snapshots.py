"""Aggregate snapshots in `sutazai_snapshots`: state, version, position, recent commands."""

from __future__ import annotations

from uuid import UUID

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from eventstore.connection import ConnectionWatch
from eventstore.errors import StoreUnavailable
from eventstore.streams import SNAPSHOTS_BUCKET


class RememberedOutcome(BaseModel):
    """What a command did to its aggregate: returned again when the same command comes back."""

    model_config = ConfigDict(frozen=True)

    version: int
    sequence: int
    event_types: tuple[str, ...]


class Snapshot(BaseModel):
    """An aggregate folded up to `sequence` (the stream sequence of its last event)."""

    model_config = ConfigDict(frozen=True)

    aggregate_type: str
    aggregate_id: UUID
    state_schema: str
    version: int
    sequence: int
    state: dict[str, JsonValue]
    commands: dict[str, RememberedOutcome]


class SnapshotStore:
    """Read and write snapshots; a snapshot that no longer decodes is treated as absent."""

    def __init__(self, client: NatsClient, *, timeout: float, watch: ConnectionWatch) -> None:
        self._client = client
        self._timeout = timeout
        self._watch = watch
        self._bucket: KeyValue | None = None

    async def _kv(self) -> KeyValue:
        if self._bucket is None:
            js = self._client.jetstream(timeout=self._timeout)
            self._bucket = await js.key_value(SNAPSHOTS_BUCKET)
        return self._bucket

    @staticmethod
    def key(aggregate_type: str, aggregate_id: UUID) -> str:
        """`<aggregate>.<id>`."""
        return f"{aggregate_type}.{aggregate_id}"

    async def get(self, aggregate_type: str, aggregate_id: UUID) -> Snapshot | None:
        """The latest snapshot, if any."""
        if not self._client.is_connected:
            raise StoreUnavailable("not connected to NATS")
        try:
            with self._watch.bounded("a snapshot read"):
                entry = await (await self._kv()).get(self.key(aggregate_type, aggregate_id))
        except KeyNotFoundError:
            return None
        except nats.errors.Error as error:
            raise StoreUnavailable(f"snapshot read failed: {error!r}") from error
        if entry.value is None:
            return None
        try:
            return Snapshot.model_validate_json(entry.value)
        except ValidationError:
            return None

    async def put(self, snapshot: Snapshot) -> None:
        """Store a snapshot (best effort: the log, not the snapshot, is the truth)."""
        key = self.key(snapshot.aggregate_type, snapshot.aggregate_id)
        await (await self._kv()).put(key, snapshot.model_dump_json().encode())
