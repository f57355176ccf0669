"""The graph projection on the real FalkorDB: nodes and edges of a scenario, idempotent re-apply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from uuid_utils.compat import uuid4, uuid7

from commands.dispatch import CommandDispatcher
from eventstore.store import EventStore
from projections.graph.port import FalkorGraph
from projections.graph.runner import GraphProjection
from runtime.stack import Stack
from schemas.commands import CommandAccepted, CommandRequest
from schemas.envelope import Actor

SYSTEM = Actor(id="scenario", kind="system")


@pytest.fixture
async def graph(stack: Stack) -> AsyncIterator[FalkorGraph]:
    client = aioredis.Redis.from_url(stack.graph_url)
    name = f"test_{uuid4().hex[:10]}"
    yield FalkorGraph(client, name)
    await client.execute_command("GRAPH.DELETE", name)  # type: ignore[no-untyped-call]
    await client.aclose()


async def _ok(dispatcher: CommandDispatcher, name: str, payload: dict[str, Any]) -> CommandAccepted:
    reply = await dispatcher.dispatch(
        name, CommandRequest.model_validate({"actor": SYSTEM, "payload": payload})
    )
    assert isinstance(reply, CommandAccepted), reply
    return reply


async def _counts(graph: FalkorGraph) -> tuple[int, int]:
    nodes = await graph.read("MATCH (n) RETURN count(n)")
    edges = await graph.read("MATCH ()-[r]->() RETURN count(r)")
    return int(nodes[0][0]), int(edges[0][0])


async def test_a_scenario_becomes_the_expected_graph_and_reapplying_changes_nothing(
    dispatcher: CommandDispatcher, event_store: EventStore, graph: FalkorGraph
) -> None:
    name = f"g{uuid4().hex[:8]}"
    user = await _ok(
        dispatcher,
        "RegisterUser",
        {"email": f"{name}@example.org", "username": name, "password": "long enough"},
    )
    owner = str(user.aggregate_id)
    coder = await _ok(
        dispatcher, "RegisterAgent", {"name": f"{name}-coder", "kind": "code_assistant"}
    )
    planner = await _ok(
        dispatcher, "RegisterAgent", {"name": f"{name}-plan", "kind": "orchestrator"}
    )
    document = await _ok(
        dispatcher, "AddDocument", {"owner_id": owner, "title": "spec", "content": "the spec"}
    )
    parent = await _ok(
        dispatcher,
        "SubmitTask",
        {
            "owner_id": owner,
            "task_type": "test.workflow",
            "document_ids": [str(document.aggregate_id)],
        },
    )
    child = await _ok(
        dispatcher,
        "SubmitTask",
        {"owner_id": owner, "task_type": "test.generate", "parent_id": str(parent.aggregate_id)},
    )
    await _ok(
        dispatcher,
        "AttachSubtask",
        {"task_id": str(parent.aggregate_id), "subtask_id": str(child.aggregate_id)},
    )
    await _ok(
        dispatcher,
        "AssignTask",
        {"task_id": str(child.aggregate_id), "agent_id": str(coder.aggregate_id)},
    )
    await _ok(dispatcher, "StartTask", {"task_id": str(child.aggregate_id)})
    for _ in range(2):
        await _ok(
            dispatcher,
            "SendAgentMessage",
            {
                "source_agent_id": str(planner.aggregate_id),
                "target_agent_id": str(coder.aggregate_id),
                "task_id": str(child.aggregate_id),
                "message_type": "task",
            },
        )
    conversation = await _ok(dispatcher, "StartConversation", {"owner_id": owner, "title": "q"})
    question = str(uuid7())
    await _ok(
        dispatcher,
        "PostUserMessage",
        {"conversation_id": str(conversation.aggregate_id), "message_id": question, "content": "?"},
    )
    await _ok(
        dispatcher,
        "RecordAssistantReply",
        {
            "conversation_id": str(conversation.aggregate_id),
            "message_id": str(uuid7()),
            "in_reply_to": question,
            "content": "see the spec",
            "model": "smollm2",
            "citations": [{"document_id": str(document.aggregate_id), "chunk_index": 0}],
        },
    )

    projection = GraphProjection(event_store, graph, batch_size=64)
    assert await projection.catch_up() == await event_store.last_sequence()

    workers = await graph.read(
        "MATCH (a:Agent)-[:EXECUTED]->(c:Task)-[:SUBTASK_OF]->(p:Task {id: $parent}) RETURN a.id",
        {"parent": str(parent.aggregate_id)},
    )
    assert workers == [[str(coder.aggregate_id)]]
    referencing = await graph.read(
        "MATCH (t:Task)-[:REFERENCES]->(d:Document {id: $d}) RETURN t.id",
        {"d": str(document.aggregate_id)},
    )
    assert referencing == [[str(parent.aggregate_id)]]
    created = await graph.read(
        "MATCH (u:User {id: $u})-[:CREATED]->(t:Task) RETURN t.id ORDER BY t.id", {"u": owner}
    )
    assert sorted(row[0] for row in created) == sorted(
        [str(parent.aggregate_id), str(child.aggregate_id)]
    )
    sent = await graph.read(
        "MATCH (:Agent {id: $s})-[r:SENT_MESSAGE_TO]->(:Agent {id: $t}) RETURN r.count",
        {"s": str(planner.aggregate_id), "t": str(coder.aggregate_id)},
    )
    assert sent == [[2]]
    owned = await graph.read("MATCH (:User {id: $u})-[:OWNS]->(n) RETURN count(n)", {"u": owner})
    assert owned == [[2]]  # the document and the conversation
    cited = await graph.read(
        "MATCH (:Conversation {id: $c})-[:CITES]->(d:Document) RETURN d.id",
        {"c": str(conversation.aggregate_id)},
    )
    assert cited == [[str(document.aggregate_id)]]
    status = await graph.read(
        "MATCH (t:Task {id: $t}) RETURN t.status", {"t": str(child.aggregate_id)}
    )
    assert status == [["running"]]

    before = await _counts(graph)
    # Every event applied a second time, from sequence 1: nothing may change.
    await graph.write([("MATCH (k:ProjectionCheckpoint) SET k.sequence = 0", {})])
    await projection.catch_up()
    assert await _counts(graph) == before
    assert await graph.read(
        "MATCH (:Agent {id: $s})-[r:SENT_MESSAGE_TO]->() RETURN r.count",
        {"s": str(planner.aggregate_id)},
    ) == [[2]]


async def test_uniqueness_constraints_hold_in_the_graph(graph: FalkorGraph) -> None:
    await graph.ensure_schema()
    await graph.ensure_schema()  # idempotent
    await graph.write([("CREATE (:User {id: 'same'})", {})])
    with pytest.raises(aioredis.ResponseError):
        await graph.write([("CREATE (:User {id: 'same'})", {})])
    assert await graph.read("MATCH (u:User {id: 'same'}) RETURN count(u)") == [[1]]
