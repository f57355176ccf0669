"""The gateway over real HTTP: liveness, readiness per dependency, metrics, GraphQL queries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from commands.bus import CommandBus
from eventstore.store import EventStore
from projections.read_models import projector_named
from projections.runtime import ProjectionRunner
from runtime.bootstrap import Platform, connect, serve_gateway
from runtime.settings import Settings
from runtime.stack import Stack
from tests.conftest import ServerFaults
from tests.servers import free_port
from tests.tasks import context, new_submission

NEXT_PAGE = """
  query ($after: String) { tasks(status: "pending", first: 2, after: $after) { items { id } } }
"""


@pytest.fixture
async def gateway(settings: Settings, stack: Stack) -> AsyncIterator[tuple[str, Platform]]:
    async with connect(settings, stack) as platform, serve_gateway(platform, free_port()) as url:
        yield url, platform


async def test_liveness_readiness_and_metrics(gateway: tuple[str, Platform]) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "failed": {}}
        metrics = await client.get("/metrics")
        assert 'sutazai_http_requests_total{path="/readyz",status="200"} 1.0' in metrics.text


async def test_readiness_names_the_dependency_that_is_down(
    gateway: tuple[str, Platform], server_faults: ServerFaults
) -> None:
    url, _ = gateway
    server_faults.kill("redis")
    async with httpx.AsyncClient(base_url=url) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert set(ready.json()["failed"]) == {"redis"}


async def test_tasks_and_task_queries_answer_from_the_read_model(
    gateway: tuple[str, Platform], bus: CommandBus, event_store: EventStore
) -> None:
    url, platform = gateway
    submitted = [new_submission(priority=p) for p in (1, 2, 3)]
    for submission in submitted:
        await bus.execute(submission, context())
    await ProjectionRunner(event_store, platform.postgres, projector_named("tasks")).catch_up()

    query = """
      query ($id: ID!) {
        task(id: $id) { id status priority taskType version }
        tasks(status: "pending", first: 2) { items { id status } nextCursor }
      }
    """
    async with httpx.AsyncClient(base_url=url) as client:
        answer = await client.post(
            "/graphql", json={"query": query, "variables": {"id": str(submitted[0].task_id)}}
        )
        page_two = await client.post(
            "/graphql",
            json={
                "query": NEXT_PAGE,
                "variables": {"after": answer.json()["data"]["tasks"]["nextCursor"]},
            },
        )
        graphiql = await client.get("/graphql", headers={"Accept": "text/html"})
    data = answer.json()["data"]
    assert data["task"] == {
        "id": str(submitted[0].task_id),
        "status": "pending",
        "priority": 1,
        "taskType": "code.generate",
        "version": 1,
    }
    assert len(data["tasks"]["items"]) == 2
    assert all(item["status"] == "pending" for item in data["tasks"]["items"])
    first_ids = {item["id"] for item in data["tasks"]["items"]}
    second_ids = {item["id"] for item in page_two.json()["data"]["tasks"]["items"]}
    assert second_ids
    assert not first_ids & second_ids
    assert graphiql.status_code == 200
    assert "graphiql" in graphiql.text.lower()
