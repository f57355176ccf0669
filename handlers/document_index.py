"""Document chunks as vectors in Qdrant: split, embed, upsert, search, delete.

Chunks are split by semantic-text-splitter (sentence-aware, with overlap); each point's id
derives from (document id, chunk index), so indexing a document again overwrites its points
instead of adding copies. The payload keeps the owner, so a search can stay within one user's
documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import NAMESPACE_URL, UUID, uuid5

from qdrant_client import AsyncQdrantClient, models
from semantic_text_splitter import TextSplitter

from handlers.model_port import ModelPort
from schemas.envelope import EventEnvelope

COLLECTION = "sutazai_document_chunks"
_POINT_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/document-chunk")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, as found by a search."""

    document_id: UUID
    chunk_index: int
    text: str
    score: float
    title: str


def point_id(document_id: UUID, chunk_index: int) -> str:
    """The point of one chunk: the same id every time the document is indexed."""
    return str(uuid5(_POINT_IDS, f"{document_id}:{chunk_index}"))


class DocumentIndex:
    """Chunks, embeds and searches documents."""

    def __init__(
        self,
        qdrant: AsyncQdrantClient,
        model: ModelPort,
        *,
        dimensions: int = 384,
        chunk_chars: tuple[int, int] = (300, 600),
        overlap: int = 60,
    ) -> None:
        self.qdrant = qdrant
        self.model = model
        self.dimensions = dimensions
        self._splitter = TextSplitter(chunk_chars, overlap=overlap)

    async def drop_collection(self) -> None:
        """Forget every vector (a rebuild starts from nothing)."""
        if await self.qdrant.collection_exists(COLLECTION):
            await self.qdrant.delete_collection(COLLECTION)

    async def ensure_collection(self) -> None:
        """Create the collection (cosine distance) if it is not there yet."""
        if not await self.qdrant.collection_exists(COLLECTION):
            await self.qdrant.create_collection(
                COLLECTION,
                vectors_config=models.VectorParams(
                    size=self.dimensions, distance=models.Distance.COSINE
                ),
            )

    def chunks(self, text: str) -> list[str]:
        """The document's text in overlapping pieces."""
        return [c for c in self._splitter.chunks(text) if c.strip()]

    async def index(
        self,
        *,
        document_id: UUID,
        owner_id: UUID,
        title: str,
        text: str,
        cause: EventEnvelope | None,
    ) -> int:
        """Embed and store every chunk of a document; returns how many there are.

        With a `cause` the embedding is recorded as a model call; a rebuild passes none, since
        a read model rebuilt from the log must not append to it.
        """
        pieces = self.chunks(text)
        if not pieces:
            return 0
        vectors = await self.model.embed(pieces, cause=cause, purpose="document.index")
        await self.qdrant.upsert(
            COLLECTION,
            points=[
                models.PointStruct(
                    id=point_id(document_id, index),
                    vector=vector,
                    payload={
                        "document_id": str(document_id),
                        "owner_id": str(owner_id),
                        "chunk_index": index,
                        "title": title,
                        "text": piece,
                    },
                )
                for index, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
            ],
        )
        return len(pieces)

    async def remove(self, document_id: UUID) -> None:
        """Delete every chunk of a document."""
        await self.qdrant.delete(
            COLLECTION,
            points_selector=models.FilterSelector(
                filter=models.Filter(
                    must=[
                        models.FieldCondition(
                            key="document_id", match=models.MatchValue(value=str(document_id))
                        )
                    ]
                )
            ),
        )

    async def search(
        self,
        query: str,
        *,
        k: int,
        owner_id: UUID | None,
        cause: EventEnvelope | None = None,
    ) -> list[Chunk]:
        """The `k` chunks nearest to `query` (within one owner's documents when given).

        With a `cause` the query's embedding is recorded as a model call; a plain search (a
        GraphQL query) records nothing: queries never append to the log.
        """
        vector = (await self.model.embed([query], cause=cause, purpose="document.search"))[0]
        where = (
            models.Filter(
                must=[
                    models.FieldCondition(
                        key="owner_id", match=models.MatchValue(value=str(owner_id))
                    )
                ]
            )
            if owner_id is not None
            else None
        )
        found = await self.qdrant.query_points(
            COLLECTION, query=vector, limit=k, query_filter=where, with_payload=True
        )
        return [_chunk(point) for point in found.points]


def _chunk(point: models.ScoredPoint) -> Chunk:
    payload = point.payload or {}
    return Chunk(
        document_id=UUID(str(payload["document_id"])),
        chunk_index=int(payload["chunk_index"]),
        text=str(payload["text"]),
        score=float(point.score),
        title=str(payload.get("title", "")),
    )


def numbered(chunks: Sequence[Chunk]) -> str:
    """The chunks as a numbered context for a prompt."""
    return "\n\n".join(f"[{n}] ({c.title}) {c.text}" for n, c in enumerate(chunks, start=1))
