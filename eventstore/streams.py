"""The streams and buckets of docs/architecture.md §3, created or brought up to date at start."""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_fixed

from eventstore.errors import StreamConfigConflict

log = structlog.get_logger(__name__)

EVENTS_STREAM = "SUTAZAI_EVENTS"
EVENTS_SUBJECTS = "sutazai.events.>"
DLQ_STREAM = "SUTAZAI_DLQ"
DLQ_SUBJECTS = "sutazai.dlq.>"
SNAPSHOTS_BUCKET = "sutazai_snapshots"
UNIQUE_BUCKET = "sutazai_unique"
BLOBS_BUCKET = "sutazai_blobs"
AGENTS_BUCKET = "sutazai_agents"
LEASES_BUCKET = "sutazai_leases"

# Fields the server cannot change on an existing stream: a difference is an error, not an update.
_IMMUTABLE = ("storage", "retention")


@dataclass(frozen=True)
class StreamLayout:
    """The tunable parts of the layout."""

    duplicate_window: float = 120.0
    heartbeat_ttl: float = 15.0
    """Seconds an agent's heartbeat lives in `sutazai_agents` unless renewed."""
    replicas: int = 1
    """Copies of every stream, bucket and object store (3 on a 3-node cluster)."""
    lease_ttl: float = 10.0
    """Seconds a projector's lease in `sutazai_leases` lives unless renewed."""


def _file_stream(name: str, subjects: str, layout: StreamLayout) -> StreamConfig:
    """A stream on disk, kept by limits (none set), readable by direct get."""
    return StreamConfig(
        name=name,
        subjects=[subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=layout.duplicate_window,
        allow_direct=True,
        num_replicas=layout.replicas,
    )


def events_stream(layout: StreamLayout) -> StreamConfig:
    """The event log: file storage, kept forever, immutable (no delete, no purge)."""
    return replace(
        _file_stream(EVENTS_STREAM, EVENTS_SUBJECTS, layout),
        # Should limits ever be set, refuse new events rather than drop old ones.
        discard=DiscardPolicy.NEW,
        allow_atomic=True,
        deny_delete=True,
        deny_purge=True,
    )


def dlq_stream(layout: StreamLayout) -> StreamConfig:
    """Events a consumer gave up on, with the error."""
    return _file_stream(DLQ_STREAM, DLQ_SUBJECTS, layout)


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    """Create the stream, or update it in place; never delete or recreate one (data would go)."""
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        log.info("stream.created", stream=wanted.name)
        return
    current = info.config
    for field in _IMMUTABLE:
        if getattr(current, field) != getattr(wanted, field):
            raise StreamConfigConflict(
                f"stream {wanted.name} has {field}={getattr(current, field)}, "
                f"wanted {getattr(wanted, field)}: the server cannot change it in place; "
                "migrate the data to a new stream by hand"
            )
    changed = {
        key: value for key, value in wanted.as_dict().items() if current.as_dict().get(key) != value
    }
    if not changed:
        return
    try:
        await js.update_stream(wanted)
    except APIError as error:
        raise StreamConfigConflict(
            f"stream {wanted.name} cannot take {sorted(changed)} in place: {error.description}"
        ) from error
    log.info("stream.updated", stream=wanted.name, changed=sorted(changed))


async def ensure_bucket(js: JetStreamContext, wanted: KeyValueConfig) -> None:
    """Create a KV bucket if missing; a bucket whose TTL setting changed gets the new one."""
    try:
        await js.key_value(wanted.bucket)
    except BucketNotFoundError:
        await js.create_key_value(wanted)
        log.info("bucket.created", bucket=wanted.bucket)
        return
    stream = f"KV_{wanted.bucket}"
    config = (await js.stream_info(stream)).config
    ttl = wanted.ttl or 0.0
    if (config.max_age or 0.0) != ttl:
        # A KV bucket's TTL is its stream's max age (heartbeats expire by it).
        config.max_age = ttl
        if ttl:  # the server refuses a duplicate window longer than the max age
            config.duplicate_window = min(config.duplicate_window or ttl, ttl)
        await js.update_stream(config)
        log.info("bucket.updated", bucket=wanted.bucket, ttl=ttl)


PLACEMENT_PENDING = 10005
"""nats-server's error for a stream it cannot place on enough servers ("no suitable peers")."""


def _placement_pending(error: BaseException) -> bool:
    return isinstance(error, APIError) and error.err_code == PLACEMENT_PENDING


async def ensure_layout(
    js: JetStreamContext, layout: StreamLayout, *, placement_wait: float = 30.0
) -> None:
    """Every stream and bucket the platform writes; safe to call at every start.

    A cluster whose nodes are still starting answers JetStream as soon as a quorum is up, but
    cannot yet place a stream of more replicas than the servers it knows. That refusal is
    retried for `placement_wait` seconds (all of the layout again: every step is idempotent);
    past it, it is raised, as when the layout asks more replicas than the cluster has.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(_placement_pending),
        wait=wait_fixed(0.5),
        stop=stop_after_delay(placement_wait),
        before_sleep=lambda state: log.info(
            "layout.placement_pending", attempt=state.attempt_number, replicas=layout.replicas
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await _ensure_each(js, layout)


async def _ensure_each(js: JetStreamContext, layout: StreamLayout) -> None:
    await ensure_stream(js, events_stream(layout))
    await ensure_stream(js, dlq_stream(layout))
    file, replicas = StorageType.FILE, layout.replicas
    await ensure_bucket(
        js,
        KeyValueConfig(bucket=SNAPSHOTS_BUCKET, history=1, storage=file, replicas=replicas),
    )
    await ensure_bucket(
        js, KeyValueConfig(bucket=UNIQUE_BUCKET, history=1, storage=file, replicas=replicas)
    )
    await ensure_bucket(
        js,
        KeyValueConfig(
            bucket=AGENTS_BUCKET,
            history=1,
            ttl=layout.heartbeat_ttl,
            storage=file,
            replicas=replicas,
        ),
    )
    await ensure_bucket(
        js,
        KeyValueConfig(
            bucket=LEASES_BUCKET, history=1, ttl=layout.lease_ttl, storage=file, replicas=replicas
        ),
    )
    try:
        await js.object_store(BLOBS_BUCKET)
    except NotFoundError:
        await js.create_object_store(
            BLOBS_BUCKET,
            ObjectStoreConfig(bucket=BLOBS_BUCKET, storage=file, replicas=replicas),
        )
        log.info("bucket.created", bucket=BLOBS_BUCKET)
