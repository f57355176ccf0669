"""The Document state machine, pure."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from domain.document import (
    AddDocument,
    Document,
    DocumentStatus,
    IndexingError,
    MarkDocumentIndexed,
    MarkDocumentIndexFailed,
    RemoveDocument,
    decide,
    evolve,
)
from domain.errors import AggregateAlreadyExists, AggregateNotFound, IllegalTransition
from domain.model import DomainEvent
from tests.unit.playing import play

DOC = UUID("01900000-0000-7000-8000-0000000000d1")
OWNER = UUID("01900000-0000-7000-8000-0000000000d2")
ADD = AddDocument(
    document_id=DOC,
    owner_id=OWNER,
    title="guide",
    content="text",
    content_hash="a" * 64,
    content_size=4,
)
INDEXED = MarkDocumentIndexed(document_id=DOC, chunk_count=3, embedding_model="minilm")
FAILED = MarkDocumentIndexFailed(document_id=DOC, error=IndexingError(code="EMBED", message="x"))
REMOVE = RemoveDocument(document_id=DOC)


def fold(events: list[DomainEvent]) -> Document | None:
    state: Document | None = None
    for event in events:
        state = evolve(state, event)
    return state


def test_an_added_document_can_be_indexed_after_a_failure_and_then_removed() -> None:
    events: list[DomainEvent] = []
    state: Document | None = None
    for command in (ADD, FAILED, INDEXED, REMOVE):
        new = decide(state, command)
        events.extend(new)
        state = fold(events)
    assert state is not None
    assert (state.status, state.chunk_count, state.error) == (DocumentStatus.REMOVED, 3, None)


def test_a_removed_document_accepts_nothing_and_a_missing_one_is_not_found() -> None:
    state = fold([*decide(None, ADD)])
    state = evolve(state, decide(state, REMOVE)[0])
    for command in (INDEXED, FAILED, REMOVE):
        with pytest.raises(IllegalTransition):
            decide(state, command)
    with pytest.raises(AggregateNotFound):
        decide(None, REMOVE)
    with pytest.raises(AggregateAlreadyExists):
        decide(state, ADD)


@settings(max_examples=200)
@given(st.lists(st.sampled_from([ADD, INDEXED, FAILED, REMOVE]), max_size=20))
def test_any_command_sequence_keeps_a_document_legal_and_replayable(
    script: list[BaseModel],
) -> None:
    state: Document | None = None
    emitted: list[DomainEvent] = []
    for after, events in play(decide, evolve, state, script):
        state = after
        emitted.extend(events)
        assert state is not None
        if state.status is DocumentStatus.INDEXED:
            assert state.embedding_model is not None
        if state.status is DocumentStatus.INDEX_FAILED:
            assert state.error is not None
    assert fold(emitted) == state
    removals = [e for e in emitted if type(e).__name__ == "DocumentRemoved"]
    assert len(removals) <= 1
    if removals:
        assert type(emitted[-1]).__name__ == "DocumentRemoved"
