"""Documents on the real model server and Qdrant: indexed, searched, cited, removed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uuid_utils.compat import uuid4

from eventstore.blobs import BlobStore
from handlers.document_index import DocumentIndex
from handlers.vector_rebuild import rebuild_vectors
from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import model_port
from runtime.settings import Settings
from runtime.stack import Stack
from tests.e2e.client import Session, subscribe
from tests.e2e.conftest import Gateway, running_gateway

DOCUMENTS = {
    "volcanoes": (
        "Volcanoes form where magma from the mantle reaches the surface. Mount Etna in Sicily "
        "is one of the most active volcanoes in Europe, erupting several times a decade."
    ),
    "sourdough": (
        "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria. Feed "
        "the starter with flour and water every day and bake when it doubles in size."
    ),
    "tides": (
        "Ocean tides are caused by the gravitational pull of the Moon and the Sun. Most "
        "coasts see two high tides and two low tides every lunar day."
    ),
}
ADD = """
mutation ($t: String!, $c: String!) {
  addDocument(input: {title: $t, content: $c}) { aggregateId }
}
"""
STATUS = "query ($id: ID!) { document(id: $id) { status chunkCount embeddingModel error } }"
ASK = """
mutation ($q: String!) {
  submitTask(input: {taskType: "rag.ask", payload: {question: $q}}) { aggregateId }
}
"""
TASK = "query ($id: ID!) { task(id: $id) { status result error } }"
SEARCH = """
query ($q: String!) { searchDocuments(query: $q, k: 3) { documentId chunkIndex score text } }
"""


@pytest.fixture
async def library(
    settings: Settings, stack: Stack
) -> AsyncIterator[tuple[Gateway, Session, dict[str, str]]]:
    quick: dict[str, Any] = {"heartbeat_seconds": 0.5, "coordinator_sweep_seconds": 0.5}
    async with (
        running_gateway(settings, stack, **quick) as gateway,
        run_agents(gateway.platform, AgentOptions(replica=f"r{uuid4().hex[:6]}")),
    ):
        user = await gateway.client.sign_up()
        ids = {}
        for title, text in DOCUMENTS.items():
            added = await gateway.client.data(ADD, {"t": title, "c": text}, user.access_token)
            ids[title] = added["addDocument"]["aggregateId"]
        for document_id in ids.values():
            await _until(
                gateway, user, STATUS, document_id, "document", ("INDEXED", "INDEX_FAILED")
            )
        yield gateway, user, ids


async def _until(
    gateway: Gateway, user: Session, query: str, id: str, field: str, ends: tuple[str, ...]
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        found: dict[str, Any] = (await gateway.client.data(query, {"id": id}, user.access_token))[
            field
        ]
        if found and found["status"] in ends:
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)


async def test_documents_are_indexed_searched_and_cited_by_id(
    library: tuple[Gateway, Session, dict[str, str]],
) -> None:
    gateway, user, ids = library
    for document_id in ids.values():
        document = await _until(gateway, user, STATUS, document_id, "document", ("INDEXED",))
        assert document["chunkCount"] >= 1
        assert document["embeddingModel"] == "all-minilm:l6-v2"

    hits = (
        await gateway.client.data(SEARCH, {"q": "Which volcano erupts often?"}, user.access_token)
    )["searchDocuments"]
    assert hits[0]["documentId"] == ids["volcanoes"]
    assert hits[0]["score"] >= hits[-1]["score"]

    asked = await gateway.client.data(ASK, {"q": "What causes ocean tides?"}, user.access_token)
    task = await _until(
        gateway, user, TASK, asked["submitTask"]["aggregateId"], "task", ("COMPLETED", "FAILED")
    )
    assert task["status"] == "COMPLETED", task
    assert task["result"]["answer"].strip()
    cited = [c["document_id"] for c in task["result"]["citations"]]
    assert cited[0] == ids["tides"]

    # Another user's search never sees these documents.
    stranger = await gateway.client.sign_up()
    theirs = await gateway.client.data(SEARCH, {"q": "tides"}, stranger.access_token)
    assert theirs["searchDocuments"] == []


async def test_a_removed_document_leaves_the_index(
    library: tuple[Gateway, Session, dict[str, str]],
) -> None:
    gateway, user, ids = library
    removed = await gateway.client.data(
        "mutation ($id: ID!) { removeDocument(id: $id) { sequence } }",
        {"id": ids["sourdough"]},
        user.access_token,
    )
    assert removed["removeDocument"]["sequence"] > 0
    deadline = time.monotonic() + 60
    while True:
        hits = (
            await gateway.client.data(SEARCH, {"q": "sourdough starter yeast"}, user.access_token)
        )["searchDocuments"]
        if ids["sourdough"] not in {h["documentId"] for h in hits}:
            break
        assert time.monotonic() < deadline, hits
        await asyncio.sleep(0.2)


REPLY = """
subscription ($id: ID!) {
  conversationReply(id: $id) { messageId index token final content citations }
}
"""


async def test_a_conversation_reply_streams_tokens_then_records_the_cited_answer(
    library: tuple[Gateway, Session, dict[str, str]],
) -> None:
    gateway, user, ids = library
    started = await gateway.client.data(
        'mutation { startConversation(input: {title: "baking"}, waitForProjection: true) {'
        " aggregateId } }",
        token=user.access_token,
    )
    conversation_id = started["startConversation"]["aggregateId"]
    async with subscribe(gateway.url, REPLY, {"id": conversation_id}, user.access_token) as sub:
        await gateway.until_live("conversationReply")
        await gateway.client.data(
            'mutation ($id: ID!) { postMessage(conversationId: $id, content: "How do I keep a'
            ' sourdough starter alive?") { sequence } }',
            {"id": conversation_id},
            user.access_token,
        )
        chunks = []
        while True:
            chunk = (await sub.next(timeout=120))["data"]["conversationReply"]
            chunks.append(chunk)
            if chunk["final"]:
                break
    tokens, final = chunks[:-1], chunks[-1]
    assert tokens, "the reply was streamed token by token"
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert final["content"] == "".join(t["token"] for t in tokens)
    assert final["citations"][0]["document_id"] == ids["sourdough"]


async def test_lost_vectors_are_rebuilt_from_the_log_and_search_the_same(
    library: tuple[Gateway, Session, dict[str, str]],
) -> None:
    gateway, user, ids = library
    questions = ("Which volcano erupts often?", "How do I feed a starter?", "What causes tides?")

    async def hits(question: str) -> list[tuple[str, int]]:
        found = await gateway.client.data(SEARCH, {"q": question}, user.access_token)
        return [(h["documentId"], h["chunkIndex"]) for h in found["searchDocuments"]]

    before = [await hits(q) for q in questions]
    assert {h[0][0] for h in before} == set(ids.values())
    platform = gateway.platform
    index = DocumentIndex(platform.vectors, model_port(platform, None))
    await index.drop_collection()  # as if Qdrant's files were lost
    appended_before = await platform.store.last_sequence()

    rebuilt = await rebuild_vectors(
        platform.store, BlobStore(platform.store), index, platform.postgres
    )

    assert rebuilt.documents >= len(ids)
    assert [await hits(q) for q in questions] == before
    # A rebuild appends nothing: no document event and no model call since it began (the
    # agents of this platform may append their own work meanwhile: tasks of earlier tests).
    since = [e.envelope async for e in platform.store.read(from_sequence=appended_before + 1)]
    assert not [e.event_type for e in since if e.aggregate_type in ("document", "model_call")], (
        since
    )
    resumed = await rebuild_vectors(
        platform.store, BlobStore(platform.store), index, platform.postgres, fresh=False
    )
    assert resumed.documents == 0  # the checkpoint is past every document
