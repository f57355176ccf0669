"""The document vectors are a read model like the others: rebuilt from the log on demand.

Live, the document assistant indexes each added document as it comes. A rebuild reads every
document's events from the log, folds each document, and re-embeds those that are still there
(added or indexed), in the order they were added. Its checkpoint (`vectors` in
`projection_checkpoints`) is the sequence of the last document re-embedded: a rebuild that was
interrupted goes on from there when run again without `fresh`. Nothing is appended to the log:
embeddings made by a rebuild are not recorded as model calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from commands.loading import load_aggregate
from domain.aggregates import DOCUMENT
from domain.document import Document, DocumentStatus
from eventstore.blobs import BlobStore
from eventstore.store import EventStore
from handlers.document_index import DocumentIndex
from schemas.envelope import EVENT_SUBJECT_PREFIX

CHECKPOINT = "vectors"
_KEPT = (DocumentStatus.ADDED, DocumentStatus.INDEXED)

DocumentProgress = Callable[[int, int], None]
"""Called with (documents done, documents in all) as the rebuild goes."""


@dataclass(frozen=True)
class VectorsRebuilt:
    """What a rebuild did."""

    documents: int
    chunks: int
    sequence: int
    seconds: float


async def _documents_in_order(store: EventStore) -> list[tuple[int, UUID]]:
    """Every document of the log, once, with the sequence of its first event, oldest first."""
    first: dict[UUID, int] = {}
    async for recorded in store.read(subject_filter=f"{EVENT_SUBJECT_PREFIX}.document.>"):
        first.setdefault(recorded.envelope.aggregate_id, recorded.sequence)
    return sorted((sequence, document_id) for document_id, sequence in first.items())


async def _checkpoint(pool: asyncpg.Pool) -> int:
    sequence = await pool.fetchval(
        "SELECT sequence FROM projection_checkpoints WHERE name = $1", CHECKPOINT
    )
    return int(sequence or 0)


async def _record(pool: asyncpg.Pool, sequence: int) -> None:
    await pool.execute(
        "INSERT INTO projection_checkpoints (name, version, sequence) VALUES ($1, 1, $2)"
        " ON CONFLICT (name) DO UPDATE SET sequence = $2, updated_at = now()",
        CHECKPOINT,
        sequence,
    )


async def rebuild_vectors(
    store: EventStore,
    blobs: BlobStore,
    index: DocumentIndex,
    pool: asyncpg.Pool,
    *,
    fresh: bool = True,
    progress: DocumentProgress | None = None,
) -> VectorsRebuilt:
    """Re-embed every document still in the log; `fresh` drops every vector first."""
    started = time.perf_counter()
    if fresh:
        await index.drop_collection()
        await _record(pool, 0)
    await index.ensure_collection()
    done_through = await _checkpoint(pool)
    documents = await _documents_in_order(store)
    report = progress or (lambda _done, _all: None)
    chunks = indexed = 0
    for position, (sequence, document_id) in enumerate(documents, start=1):
        if sequence > done_through:
            document = (await load_aggregate(store, DOCUMENT, document_id)).state
            if isinstance(document, Document) and document.status in _KEPT:
                text = document.content
                if text is None:
                    text = (await blobs.get(document.content_hash)).decode()
                chunks += await index.index(
                    document_id=document.document_id,
                    owner_id=document.owner_id,
                    title=document.title,
                    text=text,
                    cause=None,
                )
                indexed += 1
            await _record(pool, sequence)
        report(position, len(documents))
    last = documents[-1][0] if documents else done_through
    return VectorsRebuilt(indexed, chunks, last, time.perf_counter() - started)
