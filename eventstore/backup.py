"""Back up the log, the DLQ, the durable KV buckets and the blobs to a directory; restore them.

The format is our own, not JetStream's stream snapshot API (`$JS.API.STREAM.SNAPSHOT` and
`…RESTORE`): nats-py has no client for that chunked, flow-controlled exchange, and a server
snapshot is a tarball of the server's store files, tied to its storage format and replica
layout and opaque to a check before it is applied. Ours is plain: one file per stream or
bucket of length-prefixed records, and `manifest.json` with each file's record count, byte
size and SHA-256, the stream's first and last sequence, the platform version and the time.

Sequences are reproduced exactly. The event stream refuses deletes and purges, so it has no
gaps: a backup checks that its first sequence is 1 and that it holds as many events as its
last sequence, and refuses otherwise. A restore appends the events in order into an empty
stream, in atomic batches of up to 500 whose first event carries `Nats-Expected-Last-Sequence`
(the sequence before it) and whose acknowledgement gives the last one's sequence, so event N
lands at sequence N or the restore stops; the read models' checkpoints, which are stream sequences,
then mean the same thing in both stacks. The headers an event was appended with that steer an
append (`Nats-Expected-*`, the atomic batch's `Nats-Batch-*`) are not replayed; `Nats-Msg-Id`
is, and cannot collide in an empty stream. The server's timestamps are not kept: the new
stream stamps the time of the restore (the envelope keeps the time of the event).

What is copied: `SUTAZAI_EVENTS` up to its last sequence when the backup starts, then the DLQ,
the `sutazai_unique` reservations and the `sutazai_snapshots` (those past that sequence left
out: the log they describe is not in the backup), and the `sutazai_blobs` objects. Not copied:
`sutazai_agents` heartbeats and `sutazai_leases`, which live seconds and belong to running
processes. Reservations are read after the log, so one without its event (taken after the
backup's end) is released by the grace period like any abandoned reservation.

A record is `>QIII` (sequence, length of the subject, of the headers as JSON, of the data)
followed by those three. In a KV file the subject is the key; in the objects file, the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from eventstore.connection import ConnectionWatch
from eventstore.errors import EventStoreError, StoreUnavailable
from eventstore.streams import (
    BLOBS_BUCKET,
    DLQ_STREAM,
    EVENTS_STREAM,
    SNAPSHOTS_BUCKET,
    UNIQUE_BUCKET,
)

FORMAT = "sutazai-backup/1"
MANIFEST = "manifest.json"
_RECORD = struct.Struct(">QIII")
READ_BATCH = 1_000
READ_BATCH_BYTES = 8 * 1024 * 1024
ATOMIC_BATCH = 500
"""Events a restore appends in one atomic batch (the server takes up to 1,000)."""
ATOMIC_BATCH_BYTES = 4 * 1024 * 1024
"""A batch ends early past this many bytes of events (large documents stay bounded)."""
_SERVER_HEADERS = {
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-Last-Sequence",
    "Nats-UpTo-Sequence",
}
_NOT_REPLAYED = ("Nats-Expected-", "Nats-Batch-", "Nats-Rollup")

BackupProgress = Callable[[str, int, int], None]
"""Called with (what, done, total) as a backup or restore goes."""


class BackupError(EventStoreError):
    """A backup that cannot be taken or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Record:
    """One stored message: its sequence (or revision), subject (key, name), headers, data."""

    sequence: int
    subject: str
    headers: dict[str, str]
    data: bytes


@dataclass
class FileEntry:
    """One file of a backup."""

    file: str
    kind: str
    """`stream`, `kv` or `objects`."""
    source: str
    """The stream or bucket it holds."""
    records: int = 0
    bytes: int = 0
    sha256: str = ""
    first_sequence: int = 0
    last_sequence: int = 0


@dataclass
class Manifest:
    """What `manifest.json` says."""

    format: str
    version: str
    created_at: str
    files: list[FileEntry] = field(default_factory=list)

    def entry(self, source: str) -> FileEntry | None:
        """The file holding `source`, if the backup has one."""
        return next((entry for entry in self.files if entry.source == source), None)

    @property
    def events(self) -> int:
        """How many events the backup holds."""
        entry = self.entry(EVENTS_STREAM)
        return entry.records if entry else 0

    @property
    def size(self) -> int:
        """The bytes of every file."""
        return sum(entry.bytes for entry in self.files)


def platform_version() -> str:
    """The installed platform's version (pyproject's)."""
    try:
        return metadata.version("sutazai")
    except metadata.PackageNotFoundError:
        return "unknown"


def encode(record: Record) -> bytes:
    """One record as it is written to a file."""
    subject = record.subject.encode()
    headers = json.dumps(record.headers, sort_keys=True).encode() if record.headers else b""
    head = _RECORD.pack(record.sequence, len(subject), len(headers), len(record.data))
    return head + subject + headers + record.data


def decode(content: bytes, name: str) -> Iterator[Record]:
    """The records of a file; a truncated or garbled one raises `BackupError`."""
    offset = 0
    while offset < len(content):
        if offset + _RECORD.size > len(content):
            raise BackupError(f"{name} ends mid-record: the backup is truncated")
        sequence, subject, headers, data = _RECORD.unpack_from(content, offset)
        offset += _RECORD.size
        end = offset + subject + headers + data
        if end > len(content):
            raise BackupError(f"{name} ends mid-record: the backup is truncated")
        try:
            text = content[offset : offset + subject].decode()
            raw = content[offset + subject : offset + subject + headers]
            parsed = json.loads(raw) if raw else {}
        except ValueError as error:
            raise BackupError(f"{name}: a garbled record at byte {offset}") from error
        yield Record(sequence, text, parsed, content[offset + subject + headers : end])
        offset = end


class _Writer:
    """A backup file being written: counts, size and SHA-256 as it goes."""

    def __init__(self, directory: Path, entry: FileEntry) -> None:
        self.entry = entry
        self._digest = hashlib.sha256()
        self._file = (directory / entry.file).open("wb")

    def add(self, record: Record) -> None:
        chunk = encode(record)
        self._file.write(chunk)
        self._digest.update(chunk)
        entry = self.entry
        entry.records += 1
        entry.bytes += len(chunk)
        entry.first_sequence = entry.first_sequence or record.sequence
        entry.last_sequence = record.sequence

    def close(self) -> FileEntry:
        self._file.close()
        self.entry.sha256 = self._digest.hexdigest()
        return self.entry


class _Replies:
    """The replies to one direct-get batch, complete with the server's status message."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.status: dict[str, str] = {}
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def expect(self) -> None:
        self.messages, self.status = [], {}
        self.done = asyncio.get_running_loop().create_future()

    async def collect(self, message: Msg) -> None:
        headers = message.headers or {}
        if "Status" not in headers:
            self.messages.append(message)
        elif not self.done.done():
            self.status = headers
            self.done.set_result(None)


async def read_stream(
    client: NatsClient, stream: str, *, up_to: int, timeout: float, watch: ConnectionWatch
) -> AsyncIterator[list[Record]]:
    """Every message of `stream` up to sequence `up_to`, with its headers, a batch at a time:
    batched direct gets, as `eventstore.direct` reads (which drops the headers)."""
    replies = _Replies()
    inbox = client.new_inbox()
    subscription = await client.subscribe(inbox, cb=replies.collect)
    api = f"$JS.API.DIRECT.GET.{stream}"
    next_sequence = 1
    try:
        while next_sequence <= up_to:
            request = {
                "seq": next_sequence,
                "next_by_subj": ">",
                "batch": min(READ_BATCH, up_to - next_sequence + 1),
                "max_bytes": READ_BATCH_BYTES,
            }
            replies.expect()
            await client.publish(api, json.dumps(request).encode(), reply=inbox)
            with watch.bounded("a backup read"):
                await asyncio.wait_for(replies.done, timeout)
            code = replies.status.get("Status")
            if code == "404" or not replies.messages:
                return
            if code != "204":
                raise StoreUnavailable(f"direct get on {stream} answered {replies.status}")
            batch: list[Record] = []
            for message in replies.messages:
                headers = dict(message.headers or {})
                sequence = int(headers["Nats-Sequence"])
                if sequence > up_to:
                    break
                subject = headers["Nats-Subject"]
                kept = {k: v for k, v in headers.items() if k not in _SERVER_HEADERS}
                batch.append(Record(sequence, subject, kept, bytes(message.data)))
                next_sequence = sequence + 1
            yield batch
            if len(batch) < len(replies.messages):
                return
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as error:
        raise StoreUnavailable(f"NATS did not answer a backup read: {error!r}") from error
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


async def _stream_state(client: NatsClient, stream: str, timeout: float) -> tuple[int, int, int]:
    """(first sequence, last sequence, messages) of a stream."""
    info = await client.jetstream(timeout=timeout).stream_info(stream)
    state = info.state
    return int(state.first_seq), int(state.last_seq), int(state.messages)


async def back_up(
    client: NatsClient,
    target: Path,
    *,
    timeout: float,
    watch: ConnectionWatch,
    progress: BackupProgress | None = None,
) -> Manifest:
    """Write a backup into `target` (a new or empty directory).

    Written into a sibling directory first and renamed at the end: a backup that failed midway
    leaves no directory that looks like a backup.
    """
    scratch = _prepare(target)
    try:
        manifest = await _back_up_into(client, scratch, timeout, watch, progress)
        _finish(scratch, manifest, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _prepare(target: Path) -> Path:
    """The scratch directory a backup into `target` is written in."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not empty; name a new directory")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory")
    scratch = target.parent / f".{target.name}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    return scratch


def _finish(scratch: Path, manifest: Manifest, target: Path) -> None:
    (scratch / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    if target.exists():
        target.rmdir()
    scratch.rename(target)


async def _back_up_into(
    client: NatsClient,
    directory: Path,
    timeout: float,
    watch: ConnectionWatch,
    progress: BackupProgress | None,
) -> Manifest:
    manifest = Manifest(FORMAT, platform_version(), datetime.now(UTC).isoformat())
    first, last, count = await _stream_state(client, EVENTS_STREAM, timeout)
    if count and (first != 1 or count != last):
        raise BackupError(
            f"{EVENTS_STREAM} has gaps ({count} events, {first} to {last}): its "
            "sequences could not be restored"
        )
    for stream, up_to, exact in ((EVENTS_STREAM, last, True), (DLQ_STREAM, None, False)):
        if up_to is None:
            up_to = (await _stream_state(client, stream, timeout))[1]
        writer = _Writer(directory, FileEntry(f"{stream}.records", "stream", stream))
        try:
            async for batch in read_stream(
                client, stream, up_to=up_to, timeout=timeout, watch=watch
            ):
                for record in batch:
                    if exact and record.sequence != writer.entry.records + 1:
                        raise BackupError(
                            f"{stream} has no message at sequence {writer.entry.records + 1}"
                        )
                    writer.add(record)
                if progress is not None:
                    progress(stream, writer.entry.last_sequence, up_to)
        finally:
            manifest.files.append(writer.close())
        if exact and writer.entry.records != count:
            raise BackupError(f"{stream} gave {writer.entry.records} of {count} events")
    js = client.jetstream(timeout=timeout)
    for bucket in (UNIQUE_BUCKET, SNAPSHOTS_BUCKET):
        kv = await js.key_value(bucket)
        keys = await bucket_keys(js, bucket)
        writer = _Writer(directory, FileEntry(f"KV_{bucket}.records", "kv", bucket))
        for done, key in enumerate(keys, start=1):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue  # gone since the listing
            value = entry.value or b""
            if bucket == SNAPSHOTS_BUCKET and _snapshot_past(value, last):
                continue
            writer.add(Record(int(entry.revision or 0), key, {}, value))
            if progress is not None:
                progress(bucket, done, len(keys))
        manifest.files.append(writer.close())
    objects = await js.object_store(BLOBS_BUCKET)
    try:
        infos = [info for info in await objects.list() if not info.deleted]
    except NotFoundError:
        infos = []
    writer = _Writer(directory, FileEntry(f"OBJ_{BLOBS_BUCKET}.records", "objects", BLOBS_BUCKET))
    for done, info in enumerate(sorted(infos, key=lambda i: i.name), start=1):
        result = await objects.get(info.name)
        writer.add(Record(done, info.name, {}, bytes(result.data or b"")))
        if progress is not None:
            progress(BLOBS_BUCKET, done, len(infos))
    manifest.files.append(writer.close())
    return manifest


def _snapshot_past(value: bytes, last: int) -> bool:
    """Whether a snapshot describes events past the backup's end (it is then left out)."""
    try:
        return int(json.loads(value)["sequence"]) > last
    except (ValueError, KeyError, TypeError):
        return False  # not ours to judge: the snapshot store ignores what it cannot read


def check(source: Path) -> tuple[Manifest, dict[str, list[Record]]]:
    """Read and verify a whole backup before anything is written anywhere.

    Every file must be there with the size, SHA-256 and record count the manifest gives, and
    the event stream's records must run from sequence 1 without a gap. Returns the manifest
    and each source's records.
    """
    path = source / MANIFEST
    if not path.is_file():
        raise BackupError(f"{source} has no {MANIFEST}: not a whole backup")
    try:
        raw = json.loads(path.read_text())
        files = [FileEntry(**entry) for entry in raw.pop("files")]
        manifest = Manifest(**raw, files=files)
        typed = all(
            isinstance(entry.file, str)
            and isinstance(entry.source, str)
            and isinstance(entry.sha256, str)
            and isinstance(entry.bytes, int)
            and isinstance(entry.records, int)
            for entry in files
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        typed = False
    if not typed:
        raise BackupError(f"its {MANIFEST} is not one this version reads")
    if manifest.format != FORMAT:
        raise BackupError(f"the backup is {manifest.format!r}; this reads {FORMAT!r}")
    if manifest.entry(EVENTS_STREAM) is None:
        raise BackupError(f"the manifest names no file for {EVENTS_STREAM}")
    contents: dict[str, list[Record]] = {}
    for entry in manifest.files:
        file = source / entry.file
        if Path(entry.file).name != entry.file or not file.is_file():
            raise BackupError(f"{entry.file} is missing from the backup")
        content = file.read_bytes()
        if len(content) != entry.bytes:
            raise BackupError(
                f"{entry.file} has {len(content):,} of {entry.bytes:,} bytes: "
                "the backup is truncated"
            )
        if hashlib.sha256(content).hexdigest() != entry.sha256:
            raise BackupError(f"{entry.file} fails its SHA-256 check: the backup is damaged")
        records = list(decode(content, entry.file))
        if len(records) != entry.records:
            raise BackupError(f"{entry.file} has {len(records)} records, not {entry.records}")
        contents[entry.source] = records
    events = contents[EVENTS_STREAM]
    if [record.sequence for record in events] != list(range(1, len(events) + 1)):
        raise BackupError(f"the {EVENTS_STREAM} records have a gap")
    return manifest, contents


async def bucket_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """Every key a KV bucket has a message for (deleted ones too: their marker), sorted.

    Asked of the stream itself (its subjects), not through `KeyValue.keys()`: that one watches
    the bucket with an ordered consumer and can end before it has seen every key (a consumer
    whose pending count is still 0 when first asked), so a backup could miss a reservation.
    """
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    return sorted(subject[len(prefix) :] for subject in info.state.subjects or {})


async def target_contents(client: NatsClient, timeout: float) -> dict[str, int]:
    """What a restore's target already holds: messages per stream, keys and objects per
    bucket (only what a restore writes)."""
    js = client.jetstream(timeout=timeout)
    found: dict[str, int] = {}
    for stream in (EVENTS_STREAM, DLQ_STREAM):
        found[stream] = (await _stream_state(client, stream, timeout))[1]
    for bucket in (UNIQUE_BUCKET, SNAPSHOTS_BUCKET):
        kv = await js.key_value(bucket)
        found[bucket] = 0
        for key in await bucket_keys(js, bucket):
            try:
                await kv.get(key)
            except KeyNotFoundError:
                continue  # deleted: only its marker is left
            found[bucket] += 1
    objects = await js.object_store(BLOBS_BUCKET)
    try:
        found[BLOBS_BUCKET] = len([i for i in await objects.list() if not i.deleted])
    except NotFoundError:
        found[BLOBS_BUCKET] = 0
    return found


def _replayed(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.startswith(_NOT_REPLAYED)}


async def _publish_events(
    client: NatsClient,
    records: list[Record],
    *,
    timeout: float,
    progress: BackupProgress | None,
) -> None:
    """Append `records` in order, in atomic batches, each checked to land at its own sequences.

    A batch's first event carries the sequence the stream must be at; its commit's
    acknowledgement gives the sequence of its last event. A batch is one write for the server
    (one fsync under `sync_interval: always`), which makes a restore several times faster than
    an acknowledgement per event.
    """
    done = 0
    while done < len(records):
        chunk: list[Record] = []
        size = 0
        for record in records[done : done + ATOMIC_BATCH]:
            if chunk and size + len(record.data) > ATOMIC_BATCH_BYTES:
                break
            chunk.append(record)
            size += len(record.data)
        batch_id = uuid.uuid4().hex
        first, last = chunk[0].sequence, chunk[-1].sequence
        try:
            for position, record in enumerate(chunk, start=1):
                headers = _replayed(record.headers)
                if position == 1:
                    headers["Nats-Expected-Stream"] = EVENTS_STREAM
                    headers["Nats-Expected-Last-Sequence"] = str(first - 1)
                if len(chunk) > 1:
                    headers["Nats-Batch-Id"] = batch_id
                    headers["Nats-Batch-Sequence"] = str(position)
                if position < len(chunk):
                    await client.publish(record.subject, record.data, headers=headers)
                    continue
                if len(chunk) > 1:
                    headers["Nats-Batch-Commit"] = "1"
                reply = await client.request(
                    record.subject, record.data, timeout=timeout, headers=headers
                )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            raise StoreUnavailable(f"no acknowledgement for events {first} to {last}") from error
        try:
            answer = json.loads(reply.data)
        except ValueError:
            answer = {"error": reply.data.decode(errors="replace")}
        if "error" in answer or answer.get("duplicate") or int(answer.get("seq", 0)) != last:
            raise BackupError(
                f"events {first} to {last} were not stored at their sequences; the target "
                "holds a partial log"
            )
        done += len(chunk)
        if progress is not None:
            progress(EVENTS_STREAM, done, len(records))
    if progress is not None:
        progress(EVENTS_STREAM, len(records), len(records))


async def restore(
    client: NatsClient,
    contents: dict[str, list[Record]],
    *,
    timeout: float,
    progress: BackupProgress | None = None,
) -> None:
    """Write a checked backup (`check`) into a target whose streams are empty.

    The caller has checked the target (`target_contents`). The events go first, at their own
    sequences; then the DLQ (in order), the reservations, snapshots and blobs.
    """
    await _publish_events(client, contents[EVENTS_STREAM], timeout=timeout, progress=progress)
    js = client.jetstream(timeout=timeout)
    dlq = contents.get(DLQ_STREAM, [])
    for done, record in enumerate(dlq, start=1):
        await js.publish(record.subject, record.data, headers=_replayed(record.headers) or None)
        if progress is not None:
            progress(DLQ_STREAM, done, len(dlq))

    async def put_each(name: str, put: Callable[[str, bytes], Awaitable[object]]) -> None:
        entries = contents.get(name, [])
        for done, record in enumerate(entries, start=1):
            await put(record.subject, record.data)
            if progress is not None:
                progress(name, done, len(entries))

    for bucket in (UNIQUE_BUCKET, SNAPSHOTS_BUCKET):
        await put_each(bucket, (await js.key_value(bucket)).put)
    await put_each(BLOBS_BUCKET, (await js.object_store(BLOBS_BUCKET)).put)
