"""The Document aggregate: text the agents index and cite.

Content is stored once: inline in the event when small, otherwise in the Object Store under its
hash (the command handler decides; the domain sees the hash and size either way).
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from domain.errors import IllegalTransition, require_existing, require_new
from domain.model import DomainEvent, ErrorReport, Frozen, Payload, founded_by

AGGREGATE = "document"


class DocumentStatus(StrEnum):
    """Where a document is in its life."""

    ADDED = "added"
    INDEXED = "indexed"
    INDEX_FAILED = "index_failed"
    REMOVED = "removed"


class IndexingError(ErrorReport):
    """Why indexing failed: a stable code and a message."""


class AddDocument(Frozen):
    """Add a document. `content` is None when the body lives in the Object Store."""

    document_id: UUID
    owner_id: UUID
    title: str = Field(min_length=1, max_length=500)
    content: str | None
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_size: int = Field(ge=0)
    metadata: Payload = Field(default_factory=dict)


class MarkDocumentIndexed(Frozen):
    """The document's chunks are embedded and searchable."""

    document_id: UUID
    chunk_count: int = Field(ge=0)
    embedding_model: str = Field(min_length=1, max_length=200)


class MarkDocumentIndexFailed(Frozen):
    """Indexing failed."""

    document_id: UUID
    error: IndexingError


class RemoveDocument(Frozen):
    """Remove the document (its vectors go too)."""

    document_id: UUID


DocumentCommand = AddDocument | MarkDocumentIndexed | MarkDocumentIndexFailed | RemoveDocument


class DocumentAdded(DomainEvent):
    """A document was added."""

    document_id: UUID
    owner_id: UUID
    title: str
    content: str | None
    content_hash: str
    content_size: int
    metadata: Payload


class DocumentIndexed(DomainEvent):
    """The document is searchable."""

    chunk_count: int
    embedding_model: str


class DocumentIndexFailed(DomainEvent):
    """Indexing failed."""

    error: IndexingError


class DocumentRemoved(DomainEvent):
    """The document is gone."""


EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    DocumentAdded,
    DocumentIndexed,
    DocumentIndexFailed,
    DocumentRemoved,
)


class Document(Frozen):
    """A document's state."""

    document_id: UUID
    owner_id: UUID
    title: str
    content: str | None
    content_hash: str
    content_size: int
    metadata: Payload
    status: DocumentStatus = DocumentStatus.ADDED
    chunk_count: int = 0
    embedding_model: str | None = None
    error: IndexingError | None = None


def decide(document: Document | None, command: DocumentCommand) -> list[DomainEvent]:
    """The events a command causes on the document, or a typed domain error."""
    if isinstance(command, AddDocument):
        require_new(document, AGGREGATE, command.document_id)
        return [DocumentAdded(**command.model_dump())]
    document = require_existing(document, AGGREGATE, command.document_id)
    if document.status is DocumentStatus.REMOVED:
        raise IllegalTransition(AGGREGATE, document.document_id, "removed", "change")
    match command:
        case MarkDocumentIndexed(chunk_count=chunks, embedding_model=model):
            return [DocumentIndexed(chunk_count=chunks, embedding_model=model)]
        case MarkDocumentIndexFailed(error=error):
            return [DocumentIndexFailed(error=error)]
        case RemoveDocument():
            return [DocumentRemoved()]
    raise TypeError(f"not a document command: {command!r}")  # pragma: no cover


STATUS_AFTER: dict[type[DomainEvent], DocumentStatus] = {
    DocumentIndexed: DocumentStatus.INDEXED,
    DocumentIndexFailed: DocumentStatus.INDEX_FAILED,
    DocumentRemoved: DocumentStatus.REMOVED,
}
"""The status each event after the addition leaves a document in: `evolve` and every other
fold that shows a document's status (the graph's) read it here."""


@founded_by(DocumentAdded, Document)
def evolve(document: Document, event: DomainEvent) -> Document:
    """The document after one of its events."""
    changes: dict[str, object]
    match event:
        case DocumentIndexed(chunk_count=chunks, embedding_model=model):
            changes = {"chunk_count": chunks, "embedding_model": model, "error": None}
        case DocumentIndexFailed(error=error):
            changes = {"error": error}
        case DocumentRemoved():
            changes = {}
        case _:  # pragma: no cover
            raise TypeError(f"not a document event: {event!r}")
    return document.model_copy(update={"status": STATUS_AFTER[type(event)], **changes})
