"""Code tasks end to end through the agents vs bare `ollama.AsyncClient` calls, side by side.

Starts a whole stack of its own (NATS, PostgreSQL, Redis, the graph and the model server, on free
loopback ports, data in a temp dir) and, in this process, the platform as `sutazai up` runs it:
every projector and the graph projection, the task coordinator and one code assistant (short
sweeps and heartbeats). Then, from a separate process (so that the client's CPU is not charged to
the platform), the same prompts both ways, SUTAZAI_BENCH_CONCURRENCY in flight (default 1: the
model server generates one answer at a time):

- ours: a `code.generate` task per prompt submitted through the command bus (`SubmitTask`), timed
  from the submission until its `TaskCompleted` reaches a follower of the log: the coordinator
  assigns it, the code assistant starts it, calls the model through its port (which records a
  `ModelCalled` event) and completes it;
- baseline: `ollama.AsyncClient(host=<the model server>).chat(...)` with the very messages and
  options the code assistant sends (checked: each `ModelCalled` event carries the hash of its
  request, compared with the baseline's).

SUTAZAI_BENCH_TASKS tasks a side (default 30), SUTAZAI_BENCH_MAX_TOKENS tokens an answer (default
32, `num_predict` on both sides, as `model_max_tokens`), in SUTAZAI_BENCH_ROUNDS alternating rounds
(default 10: baseline, ours, ours, baseline, …) after a warm-up round of each, every round the
same prompts in the same order (the model server keeps the previous prompt's cache: each side
follows the same prompt alike).
Prints `name  ours  baseline  ratio`: for tasks/s the ratio is ours / baseline, for latencies and
the model server's CPU a task it is baseline / ours; either way higher is better and 1.0 is as
fast as calling the model bare. Comment lines say where our time goes (from the events' clocks),
whether both sides got the same answers, and the machine's load average.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any
from uuid import UUID

import ollama
from uuid_utils.compat import uuid7

from bench.common import bench_stack, isolated_settings, spawned_loader
from commands.bus import CommandBus, CommandContext
from domain.task import SubmitTask
from handlers.code_assistant import SYSTEM_PROMPT
from handlers.presence import agents_bucket, online_agents
from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import connect, connect_store, run_projections
from runtime.settings import Settings
from runtime.stack import Stack
from runtime.structured_logging import configure_logging
from schemas.envelope import Actor, EventEnvelope
from tests.passwords import cheap_hasher

TASKS = int(os.environ.get("SUTAZAI_BENCH_TASKS", "30"))
CONCURRENCY = int(os.environ.get("SUTAZAI_BENCH_CONCURRENCY", "1"))
MAX_TOKENS = int(os.environ.get("SUTAZAI_BENCH_MAX_TOKENS", "32"))
ROUNDS = int(os.environ.get("SUTAZAI_BENCH_ROUNDS", "10"))
PER_ROUND = max(1, TASKS // ROUNDS)
REPLICA = "bench"
ACTOR = Actor(id="bench", kind="system")
TASK_EVENTS = "sutazai.events.task.*.*"
REQUESTS = (
    "a function that adds two numbers",
    "a function that reverses a string",
    "a function that checks whether a number is prime",
    "a function that returns the largest item of a list",
    "a function that counts the vowels in a string",
    "a function that computes the factorial of n",
    "a function that merges two sorted lists",
    "a function that removes duplicates from a list, keeping the order",
    "a function that converts Celsius to Fahrenheit",
    "a function that tells whether a string is a palindrome",
)
PROMPTS = tuple(REQUESTS[n % len(REQUESTS)] for n in range(PER_ROUND))
"""Every round, both sides: the same prompts in the same order."""


def messages_for(request: str) -> list[dict[str, str]]:
    """What the code assistant sends for a `code.generate` task of payload {"prompt": request}
    (handlers/code_assistant.py: its system prompt, `_prompt` with the default language)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Write Python code for this request:\n\n{request}"},
    ]


def options_for(max_tokens: int) -> dict[str, Any]:
    """The code assistant's options, `num_predict` being its `model_max_tokens`."""
    return {"num_predict": max_tokens, "temperature": 0.2, "seed": 42}


def request_hash(request: str, max_tokens: int) -> str:
    """The hash the model port records in `ModelCalled.prompt_hash` for this request
    (handlers/model_port.py: messages, options and format, as sorted JSON)."""
    payload: dict[str, Any] = {
        "messages": messages_for(request),
        "options": options_for(max_tokens),
        "format": None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Sample:
    """One prompt's answer and how long it took, seen from the client."""

    request: str
    latency: float
    text: str
    tokens: int
    task_id: UUID | None = None
    """Ours only: the task."""
    steps: dict[str, float] = field(default_factory=dict)
    """Ours only: milliseconds of each step, from the events' clocks."""
    same_request: bool = True
    """Ours only: the model port sent what the baseline sends (its recorded hash matches)."""


@dataclass(frozen=True)
class Run:
    """What the load process measured in one or more rounds of one side."""

    seconds: float
    samples: list[Sample]
    model_cpu: float = 0.0
    """CPU seconds the model server spent meanwhile."""
    platform_cpu: float = 0.0
    """CPU seconds this process (projectors, coordinator, code assistant) spent meanwhile."""

    @property
    def rate(self) -> float:
        """Tasks a second."""
        return len(self.samples) / self.seconds

    def percentile(self, fraction: float) -> float:
        """A latency percentile, in milliseconds (nearest rank)."""
        ordered = sorted(s.latency for s in self.samples)
        rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[rank] * 1000


async def _in_flight(
    requests: Sequence[str], concurrency: int, one: Callable[[str], Awaitable[Sample]]
) -> Run:
    """Every request through `one`, `concurrency` at a time; the wall time of the whole."""
    pending = list(reversed(requests))
    samples: list[Sample] = []

    async def worker() -> None:
        while pending:
            samples.append(await one(pending.pop()))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(seconds=time.perf_counter() - started, samples=samples)


# -- the load process ------------------------------------------------------------------------


def _baseline(settings: Settings, model_url: str, requests: Sequence[str]) -> Run:
    configure_logging(level="warning")
    return asyncio.run(_baseline_async(settings, model_url, requests))


async def _baseline_async(settings: Settings, model_url: str, requests: Sequence[str]) -> Run:
    """Bare chat calls, as the model port makes them (its client, model, messages and options)."""
    client = ollama.AsyncClient(host=model_url, timeout=settings.model_timeout)
    options = options_for(settings.model_max_tokens)

    async def one(request: str) -> Sample:
        started = time.perf_counter()
        answer = await client.chat(
            model=settings.chat_model, messages=messages_for(request), options=options, format=None
        )
        latency = time.perf_counter() - started
        return Sample(request, latency, answer.message.content or "", answer.eval_count or 0)

    return await _in_flight(requests, CONCURRENCY, one)


def _ours(settings: Settings, requests: Sequence[str]) -> Run:
    configure_logging(level="warning")
    return asyncio.run(_ours_async(settings, requests))


async def _ours_async(settings: Settings, requests: Sequence[str]) -> Run:
    """Tasks through the command bus, each timed until its `TaskCompleted` is seen in the log."""
    async with connect_store(settings, Stack(settings)) as commands:
        bus = commands.bus
        store = bus.store
        waiting: dict[UUID, asyncio.Future[tuple[EventEnvelope, float]]] = {}
        start = await store.last_sequence() + 1

        async def follow() -> None:
            async for recorded in store.read(
                from_sequence=start, subject_filter=TASK_EVENTS, follow=True
            ):
                event = recorded.envelope
                future = waiting.get(event.aggregate_id)
                if future is None or future.done():
                    continue
                if event.event_type == "TaskCompleted":
                    future.set_result((event, time.time()))
                elif event.event_type == "TaskFailed":
                    future.set_exception(RuntimeError(f"a task failed: {event.data}"))

        owner = uuid7()
        submitted: dict[UUID, float] = {}

        async def one(request: str) -> Sample:
            task_id = uuid7()
            done = waiting[task_id] = asyncio.get_running_loop().create_future()
            command = SubmitTask(
                task_id=task_id,
                owner_id=owner,
                task_type="code.generate",
                payload={"prompt": request},
            )
            started = time.perf_counter()
            submitted[task_id] = time.time()
            await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=ACTOR))
            completed, _ = await done
            latency = time.perf_counter() - started
            result: Any = completed.data["result"]
            return Sample(
                request, latency, str(result["text"]), int(result["completion_tokens"]), task_id
            )

        following = asyncio.create_task(follow())
        try:
            run = await _in_flight(requests, CONCURRENCY, one)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        # After the clock stopped: where the time went, and what the model port sent.
        samples = []
        for sample in run.samples:
            assert sample.task_id is not None
            seen = waiting[sample.task_id].result()[1]
            steps, recorded = await _steps(bus, sample.task_id, submitted[sample.task_id], seen)
            same = recorded == request_hash(sample.request, settings.model_max_tokens)
            samples.append(replace(sample, steps=steps, same_request=same))
        return Run(seconds=run.seconds, samples=samples)


def _at(event: EventEnvelope) -> float:
    return event.occurred_at.timestamp()


async def _steps(
    bus: CommandBus, task_id: UUID, submitted: float, seen: float
) -> tuple[dict[str, float], str]:
    """Milliseconds of each step of one task (from its events' clocks), and the request hash
    its `ModelCalled` event recorded."""
    store = bus.store
    events = {
        r.envelope.event_type: r.envelope async for r in store.aggregate_events("task", task_id)
    }
    submit, assign = events["TaskSubmitted"], events["TaskAssigned"]
    start, complete = events["TaskStarted"], events["TaskCompleted"]
    result: Any = complete.data["result"]
    (call,) = [
        r.envelope
        async for r in store.aggregate_events("model_call", UUID(result["model_call_id"]))
    ]
    recorded: Any = call.data
    call_ms = float(recorded["latency_ms"])
    call_ended = _at(call)
    steps = {
        "submit": (_at(submit) - submitted) * 1000,
        "assign": (_at(assign) - _at(submit)) * 1000,
        "start": (_at(start) - _at(assign)) * 1000,
        "to model": (call_ended - _at(start)) * 1000 - call_ms,
        "model call": call_ms,
        "complete": (_at(complete) - call_ended) * 1000,
        "seen": (seen - _at(complete)) * 1000,
    }
    return steps, str(recorded["prompt_hash"])


# -- this process: the servers and the platform ----------------------------------------------


def bench_settings(root: Path) -> Settings:
    """A stack of its own under `root`, every port free, quick sweeps and heartbeats."""
    return isolated_settings(
        root,
        model_max_tokens=MAX_TOKENS,
        heartbeat_seconds=0.5,
        heartbeat_ttl=3.0,
        coordinator_sweep_seconds=0.5,
    )


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when it is not known)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until_online(settings: Settings, stack: Stack, name: str) -> None:
    async with connect_store(settings, stack) as commands:
        bucket = await agents_bucket(commands.bus.store)
        deadline = time.monotonic() + 30
        while name not in {card.name for card in await online_agents(bucket)}:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never came online")
            await asyncio.sleep(0.1)


async def measure(loader: ProcessPoolExecutor, settings: Settings, stack: Stack) -> tuple[Run, Run]:
    """A warm-up round of each side, then ROUNDS alternating rounds from the load process, so
    that other load on the machine weighs on both alike; the rounds are summed."""
    loop = asyncio.get_running_loop()
    model_url = stack.model_url
    model_pid = stack["model"].pid
    client_settings = settings.model_copy(update={"nats_url": stack.nats_url})

    async def side(name: str) -> Run:
        if name == "baseline":
            return await loop.run_in_executor(loader, _baseline, settings, model_url, PROMPTS)
        return await loop.run_in_executor(loader, _ours, client_settings, PROMPTS)

    for name in ("baseline", "ours"):
        await side(name)
    rounds: dict[str, list[Run]] = {"baseline": [], "ours": []}
    for index in range(ROUNDS):
        for name in ("baseline", "ours") if index % 2 == 0 else ("ours", "baseline"):
            model_cpu, platform_cpu = _cpu_seconds(model_pid), time.process_time()
            run = await side(name)
            rounds[name].append(
                Run(
                    seconds=run.seconds,
                    samples=run.samples,
                    model_cpu=_cpu_seconds(model_pid) - model_cpu,
                    platform_cpu=time.process_time() - platform_cpu,
                )
            )
    baseline, ours = (
        Run(
            seconds=sum(r.seconds for r in rounds[name]),
            samples=[s for r in rounds[name] for s in r.samples],
            model_cpu=sum(r.model_cpu for r in rounds[name]),
            platform_cpu=sum(r.platform_cpu for r in rounds[name]),
        )
        for name in ("baseline", "ours")
    )
    return ours, baseline


def _line(name: str, ours: float, baseline: float, ratio: float, unit: str) -> None:
    print(f"{name:<34} {ours:>10.1f} {baseline:>10.1f}  {ratio:>5.2f}x  ({unit})")


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def report(ours: Run, baseline: Run, settings: Settings, load_before: str) -> None:
    """One line per figure, then comment lines: where our time goes, same answers, load."""
    tasks = len(ours.samples)
    print(
        f"# code.generate end to end vs bare ollama.AsyncClient.chat: {tasks} tasks a side"
        f" ({ROUNDS} alternating rounds of {PER_ROUND}, after a warm-up round of each),"
        f" {CONCURRENCY} in flight, num_predict {settings.model_max_tokens},"
        f" model {settings.chat_model} on {settings.model_threads} thread(s),"
        f" coordinator sweep {settings.coordinator_sweep_seconds}s,"
        f" heartbeat {settings.heartbeat_seconds}s, every projector running,"
        f" client in its own process, {os.cpu_count()} cores"
    )
    print("# ratio: tasks/s ours / baseline; latencies and CPU baseline / ours (higher is better)")
    print(f"{'name':<34} {'ours':>10} {'baseline':>10}  ratio")
    _line("code task", ours.rate, baseline.rate, ours.rate / baseline.rate, "tasks/s")
    for label, fraction in (("p50", 0.50), ("p99", 0.99)):
        mine, base = ours.percentile(fraction), baseline.percentile(fraction)
        _line(f"code task {label}", mine, base, base / mine, "ms")
    mine, base = ours.model_cpu / tasks * 1000, baseline.model_cpu / tasks * 1000
    _line("code task model server CPU", mine, base, base / mine, "ms a task")
    steps = {name: fmean(s.steps[name] for s in ours.samples) for name in ours.samples[0].steps}
    ours_call = sorted(s.steps["model call"] for s in ours.samples)
    bare_call = sorted(s.latency * 1000 for s in baseline.samples)
    print(
        "# ours, mean ms a task: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in steps.items())
        + f" (baseline chat mean {fmean(bare_call):.1f});"
        f" model call p50 {ours_call[tasks // 2]:.1f} in the port,"
        f" {bare_call[len(bare_call) // 2]:.1f} bare;"
        f" platform process CPU {ours.platform_cpu / tasks * 1000:.1f} ms a task"
        f" ({baseline.platform_cpu / len(baseline.samples) * 1000:.1f} while the baseline ran)"
    )
    if CONCURRENCY == 1:
        beyond = fmean(s.latency * 1000 - s.steps["model call"] for s in ours.samples)
        bare = fmean(bare_call)
        print(
            f"# orchestration beyond the model call: {beyond:.1f} ms a task,"
            f" {beyond / bare:.1%} of a bare call's mean: {bare / (bare + beyond):.2f}x"
            " were the model call as fast in the port as bare"
        )
    else:  # a task waiting for the code assistant is queueing, as a bare call waits for the model
        print("# orchestration beyond the model call: estimated with 1 in flight only")
    answers = {s.request: s.text for s in baseline.samples}
    same_text = sum(answers.get(s.request) == s.text for s in ours.samples)
    same_request = sum(s.same_request for s in ours.samples)
    print(
        f"# same work: {same_request}/{tasks} recorded requests hash as the baseline's,"
        f" {same_text}/{tasks} answers identical, completion tokens"
        f" {sum(s.tokens for s in ours.samples)} ours, {sum(s.tokens for s in baseline.samples)}"
        " baseline"
    )
    print(f"# load average before {load_before}, after {_load_average()}")


@contextlib.asynccontextmanager
async def platform_running(settings: Settings, stack: Stack) -> AsyncIterator[None]:
    """The platform as `sutazai up` runs it, less the gateway: projectors, coordinator, coder."""
    passwords = cheap_hasher()
    async with (
        connect(settings, stack, passwords=passwords) as platform,
        run_projections(settings, platform.store, platform.postgres, graph=platform.graph),
        run_agents(
            platform, AgentOptions(only=("task-coordinator", "code-assistant"), replica=REPLICA)
        ),
    ):
        yield


async def main() -> None:
    configure_logging(level="warning")
    load_before = _load_average()
    async with bench_stack(bench_settings) as (settings, stack):
        with spawned_loader() as loader:
            async with platform_running(settings, stack):
                await _until_online(settings, stack, f"code-assistant-{REPLICA}")
                ours, baseline = await measure(loader, settings, stack)
            report(ours, baseline, settings, load_before)


if __name__ == "__main__":
    asyncio.run(main())
