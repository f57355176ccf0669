"""The agents on the real model server: a code task goes from submitted to completed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
from uuid_utils.compat import uuid4

from domain.agent import AgentKind
from handlers.code_assistant import CAPABILITIES as CODE_CAPABILITIES
from handlers.code_assistant import CodeAssistant
from handlers.consumers import Delivered
from handlers.presence import agents_bucket, heartbeats, register
from handlers.task_coordinator import CoordinatorPolicy, TaskCoordinator
from handlers.task_work import TaskWorker
from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import model_port
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import EventEnvelope
from tests.conftest import ServerFaults
from tests.e2e.conftest import (
    Gateway,
    running_gateway,
    until_done,
    until_online,
)
from tests.servers import crash, doomed_agent


async def test_a_code_task_is_assigned_run_and_completed_with_every_step_linked(
    platform_with_agents: Gateway,
) -> None:
    gateway = platform_with_agents
    user = await gateway.client.sign_up()
    submitted = await gateway.submit_task(
        user.access_token, "code.generate", {"prompt": "a function that adds two numbers"}
    )
    task_id = submitted["aggregateId"]
    task = await until_done(gateway, user.access_token, task_id, timeout=120)

    assert task["status"] == "COMPLETED", task
    assert task["result"]["text"].strip()
    assert task["result"]["completion_tokens"] > 0
    history = [
        change async for change in gateway.platform.store.aggregate_events("task", UUID(task_id))
    ]
    types = [c.envelope.event_type for c in history]
    assert types == ["TaskSubmitted", "TaskAssigned", "TaskStarted", "TaskCompleted"]
    # Each step was caused by the one before it, and all share the submission's correlation.
    submitted_event, assigned, started, completed = (c.envelope for c in history)
    assert assigned.causation_id == str(submitted_event.event_id)
    assert started.causation_id == str(assigned.event_id)
    assert completed.causation_id == str(assigned.event_id)
    assert {e.correlation_id for e in (assigned, started, completed)} == {
        submitted_event.correlation_id
    }
    assert assigned.actor.id == "task-coordinator"
    assert started.actor.kind == "agent"
    # The model call is an event of its own, caused by the assignment.
    call_id = task["result"]["model_call_id"]
    calls = [
        c.envelope
        async for c in gateway.platform.store.aggregate_events("model_call", UUID(call_id))
    ]
    assert [c.event_type for c in calls] == ["ModelCalled"]
    assert calls[0].causation_id == str(assigned.event_id)
    assert calls[0].data["outcome"] == "ok"
    assert calls[0].data["completion_tokens"] == task["result"]["completion_tokens"]
    # The graph shows who worked on it (its projection runs beside the Postgres ones).
    graph = "query ($id: ID!) { graph(taskId: $id) { agentIds } }"
    deadline = time.monotonic() + 30
    while True:
        found = await gateway.client.data(graph, {"id": task_id}, gateway.admin.access_token)
        if found["graph"]["agentIds"]:
            break
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)
    assert found["graph"]["agentIds"] == [assigned.data["agent_id"]]
    # The system monitor's gauges are served beside the gateway's own.
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        metrics = (await http.get("/metrics")).text
    assert "sutazai_events_last_sequence" in metrics
    assert "sutazai_http_requests_total" in metrics


async def _events_of(gateway: Gateway, task_id: str) -> list[EventEnvelope]:
    return [
        r.envelope async for r in gateway.platform.store.aggregate_events("task", UUID(task_id))
    ]


async def test_a_killed_agent_loses_its_task_to_another_which_completes_it_once(
    settings: Settings, stack: Stack
) -> None:
    fast: dict[str, Any] = {"heartbeat_seconds": 0.5, "coordinator_sweep_seconds": 0.5}
    async with (
        running_gateway(settings, stack, **fast) as gateway,
        run_agents(gateway.platform, AgentOptions(only=("task-coordinator",))),
    ):
        with doomed_agent(settings, "code-assistant") as (doomed, doomed_name):
            user = await gateway.client.sign_up()
            await until_online(gateway, doomed_name, time.monotonic() + 90)
            prompt = "a long, fully commented module that implements a binary search tree"
            submitted = await gateway.submit_task(
                user.access_token, "code.generate", {"prompt": prompt}
            )
            task_id = submitted["aggregateId"]
            deadline = time.monotonic() + 60
            while "TaskStarted" not in [e.event_type for e in await _events_of(gateway, task_id)]:
                assert time.monotonic() < deadline, "the doomed agent never started the task"
                await asyncio.sleep(0.02)
            crash(doomed)  # mid-work: holding the task
        async with run_agents(
            gateway.platform, AgentOptions(only=("code-assistant",), replica=f"s{uuid4().hex[:6]}")
        ):
            task = await until_done(gateway, user.access_token, task_id, timeout=120)
        events = await _events_of(gateway, task_id)

    assert task["status"] == "COMPLETED", task
    types = [e.event_type for e in events]
    assert types.count("TaskCompleted") == 1
    assert types == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskStarted",
        "TaskAssigned",
        "TaskStarted",
        "TaskCompleted",
    ]
    first, second = (e for e in events if e.event_type == "TaskAssigned")
    assert first.data["agent_id"] != second.data["agent_id"]
    assert task["agentId"] == second.data["agent_id"]


async def test_the_same_event_delivered_twice_sends_one_set_of_commands(
    settings: Settings, stack: Stack
) -> None:
    async with (
        running_gateway(settings, stack) as gateway,
        # No system monitor here: its alerts would move the log this test watches.
        run_agents(
            gateway.platform,
            AgentOptions(
                only=("task-coordinator", "code-assistant"), replica=f"d{uuid4().hex[:6]}"
            ),
        ) as cards,
    ):
        user = await gateway.client.sign_up()
        submitted = await gateway.submit_task(user.access_token, "code.explain", {"code": "x = 1"})
        task_id = submitted["aggregateId"]
        await until_done(gateway, user.access_token, task_id, timeout=120)
        before = await _events_of(gateway, task_id)
        log_before = await gateway.platform.store.last_sequence()

        # The very handlers, with the agent's identity, get both events again: what JetStream
        # does when an acknowledgement is lost.
        platform = gateway.platform
        bus = platform.commands.bus
        # A long sweep interval: the redelivered event counts as fresh, so the guard is what
        # refuses the second assignment (not the staleness cut-off).
        coordinator = TaskCoordinator(
            bus,
            platform.postgres,
            await agents_bucket(platform.store),
            CoordinatorPolicy(sweep_every=3600),
        )
        (card,) = [c for c in cards if c.name.startswith("code-assistant-")]
        assistant = CodeAssistant(
            TaskWorker(bus, platform.store, card, CODE_CAPABILITIES),
            model_port(platform, card),
        )
        submitted_event, assigned_event = before[0], before[1]
        await coordinator.on_task_event(Delivered.of(submitted_event))
        await assistant.on_assigned(Delivered.of(assigned_event))
        after = await _events_of(gateway, task_id)
        log_after = await gateway.platform.store.last_sequence()

    assert [e.event_id for e in after] == [e.event_id for e in before]
    assert log_after == log_before


async def test_with_the_model_server_down_tasks_fail_typed_and_recover_when_it_is_back(
    settings: Settings, stack: Stack, server_faults: ServerFaults
) -> None:
    quick: dict[str, Any] = {
        "coordinator_sweep_seconds": 0.5,
        "model_attempts": 2,
        "model_breaker_threshold": 2,
        "model_breaker_seconds": 2.0,
    }
    async with (
        running_gateway(settings, stack, **quick) as gateway,
        run_agents(gateway.platform, AgentOptions(replica=f"m{uuid4().hex[:6]}")),
    ):
        user = await gateway.client.sign_up()
        server_faults.kill("model")
        submit = """
          mutation { submitTask(input: {taskType: "code.generate", maxAttempts: 50,
                                        payload: {prompt: "hello world"}}) { aggregateId } }
        """
        task_id = (await gateway.client.data(submit, token=user.access_token))["submitTask"][
            "aggregateId"
        ]
        deadline = time.monotonic() + 60
        while True:
            events = await _events_of(gateway, task_id)
            failures = [e for e in events if e.event_type == "TaskFailed"]
            if failures:
                break
            assert time.monotonic() < deadline, "the task never failed while the model was down"
            await asyncio.sleep(0.2)
        error: Any = failures[0].data["error"]
        assert error["code"] in ("MODEL_UNAVAILABLE", "MODEL_CIRCUIT_OPEN"), error
        assert error["retryable"] is True

        await server_faults.restart("model")
        # Failed retries (the circuit still open) are tried again until one completes.
        task = await until_done(
            gateway, user.access_token, task_id, timeout=180, ends=("COMPLETED",)
        )
        calls = [
            e.data["outcome"]
            async for e in _model_calls(gateway)
            if e.causation_id in {str(a.event_id) for a in await _events_of(gateway, task_id)}
        ]
    assert task["status"] == "COMPLETED", task
    assert task["result"]["text"].strip()
    assert "ok" in calls
    assert {"failed", "circuit_open"} & set(calls)


async def _model_calls(gateway: Gateway) -> AsyncIterator[EventEnvelope]:
    async for recorded in gateway.platform.store.read(subject_filter="sutazai.events.model_call.>"):
        yield recorded.envelope


async def test_a_task_past_its_deadline_is_timed_out_by_the_coordinator(
    settings: Settings, stack: Stack
) -> None:
    quick: dict[str, Any] = {"coordinator_sweep_seconds": 0.3}
    async with (
        running_gateway(settings, stack, **quick) as gateway,
        run_agents(gateway.platform, AgentOptions(only=("task-coordinator",))),
    ):
        platform = gateway.platform
        # An agent that is alive (it beats) but never does the work it is given.
        stuck = await register(
            platform.commands.bus,
            name=f"stuck-{uuid4().hex[:6]}",
            kind=AgentKind.CUSTOM,
            capabilities=["slow.job"],
            model="none",
        )
        async with heartbeats(platform.store, platform.commands.bus, stuck, every=0.3):
            user = await gateway.client.sign_up()
            submit = """
              mutation { submitTask(input: {taskType: "slow.job", deadlineSeconds: 1.0}) {
                aggregateId } }
            """
            task_id = (await gateway.client.data(submit, token=user.access_token))["submitTask"][
                "aggregateId"
            ]
            task = await until_done(gateway, user.access_token, task_id, timeout=60)
            types = [e.event_type for e in await _events_of(gateway, task_id)]

    assert task["status"] == "TIMED_OUT", task
    assert task["agentId"] == stuck.agent_id
    assert types == ["TaskSubmitted", "TaskAssigned", "TaskTimedOut"]
