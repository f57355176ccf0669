"""A task's way through the platform shows in /metrics: appends, projectors, agents, model."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from handlers.task_coordinator import CONSUMER as COORDINATOR_CONSUMER
from tests.e2e.conftest import Gateway, until_done


async def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the gateway's /metrics page, as a Prometheus server would read it."""
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"{url}/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:  # fmt: skip
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


async def test_a_completed_task_moves_every_counter_on_its_way(
    platform_with_agents: Gateway,
) -> None:
    gateway = platform_with_agents
    user = await gateway.client.sign_up()
    before = await _scrape(gateway.url)
    submitted = await gateway.submit_task(
        user.access_token, "code.generate", {"prompt": "a function that doubles a number"}
    )
    task = await until_done(gateway, user.access_token, submitted["aggregateId"], timeout=120)
    assert task["status"] == "COMPLETED", task
    assert await gateway.projected("tasks", int(submitted["sequence"]))
    after = await _scrape(gateway.url)

    def grew(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    # SubmitTask, AssignTask, StartTask, CompleteTask and the ModelCalled record at least.
    assert grew("sutazai_append_seconds_count", events="one") >= 5
    assert grew("sutazai_appended_events_total") >= 5
    assert grew("sutazai_projection_events_total", projector="tasks") >= 1
    assert grew("sutazai_projection_batch_seconds_count", projector="tasks") >= 1
    assert grew("sutazai_agent_events_total", consumer=COORDINATOR_CONSUMER, outcome="acked") >= 1
    assert grew("sutazai_agent_event_seconds_count") >= 2
    assert grew("sutazai_model_call_seconds_count", operation="chat", outcome="ok") >= 1
    assert grew("sutazai_model_tokens_total", kind="completion") > 0
    assert _total(after, "sutazai_model_circuit_open", circuit="model") == 0
