"""A page of tasks through the GraphQL gateway vs a bare Starlette JSON endpoint, side by side.

Starts its own NATS, PostgreSQL, Redis and graph servers (those of a `Stack` on free loopback
ports, data in a temp dir), runs the projectors, submits SUTAZAI_BENCH_TASKS tasks (default 2,000)
through the command bus and waits until the `tasks` read model holds them. Then two HTTP servers
run in this process, each a uvicorn with the same settings on a port of its own:

- ours: the gateway as `sutazai up` serves it (access token check, Redis rate limits kept on with
  limits too high to refuse, Strawberry), asked `tasks(first: 50)` for twelve fields of each task
  as the signed-in admin;
- baseline: one Starlette route running the same SQL (`gateway.views.tasks_page`, first=50) on the
  same asyncpg pool and answering the same fields and cursor with `JSONResponse`.

The load comes from a separate process (so that the client's CPU is not charged to the servers):
SUTAZAI_BENCH_CONCURRENCY requests in flight (default 16) on one httpx.AsyncClient, the same POST
with the same body and headers to both, a warm-up, then SUTAZAI_BENCH_REQUESTS requests (default
3,000) to each, timed in alternating rounds (baseline, ours, ours, baseline, …) so that other load
on the machine weighs on both alike. Prints `name  ours  baseline  ratio`: for requests/s the
ratio is ours / baseline, for latencies it is baseline / ours; either way higher is better, 1.0 is
as fast as the bare endpoint. A last line gives the servers' process CPU time per request (ratio
baseline / ours), which other load on the machine disturbs less than rates and latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uuid_utils.compat import uuid7

from bench.common import bench_stack, free_port, isolated_settings, spawned_loader
from commands.bus import CommandContext
from domain.task import SubmitTask, TaskStatus
from gateway.types import encode_cursor
from gateway.views import tasks_page
from projections.runtime import wait_for_sequence
from runtime.bootstrap import Platform, connect, run_projections
from runtime.gateway_wiring import ensure_admin, serve_asgi, serve_gateway
from runtime.settings import LOOPBACK, Settings
from runtime.stack import Stack
from runtime.structured_logging import configure_logging
from schemas.envelope import Actor
from tests.passwords import cheap_hasher

TASKS = int(os.environ.get("SUTAZAI_BENCH_TASKS", "2000"))
REQUESTS = int(os.environ.get("SUTAZAI_BENCH_REQUESTS", "3000"))
CONCURRENCY = int(os.environ.get("SUTAZAI_BENCH_CONCURRENCY", "16"))
WARMUP = max(200, REQUESTS // 10)
ROUNDS = 6
SERVERS = ("nats", "postgres", "redis", "graph")
"""The stack's servers the gateway reads through (the stack's others, such as models, not)."""
PAGE = 50
SUBMITS_IN_FLIGHT = 32
ADMIN_PASSWORD = "bench admin password"
ACTOR = Actor(id="bench", kind="system")
UNLIMITED = 1e9  # the rate limiter stays on (its Redis round trips are our cost) but never refuses

QUERY = (
    f"{{ tasks(first: {PAGE}) {{ items {{ id ownerId taskType priority status attempts"
    " maxAttempts agentId progress createdAt updatedAt version } nextCursor } }"
)


@dataclass(frozen=True)
class Run:
    """What the load process measured against one URL."""

    seconds: float
    latencies: list[float]
    cpu_seconds: float = 0.0
    """CPU time the servers' process spent meanwhile (it runs both servers, one at a time)."""

    @property
    def rate(self) -> float:
        """Requests a second."""
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        """A latency percentile, in milliseconds (nearest rank)."""
        ordered = sorted(self.latencies)
        rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[rank] * 1000

    @property
    def cpu_per_request(self) -> float:
        """Server CPU milliseconds a request (less sensitive than rates to other load)."""
        return self.cpu_seconds / len(self.latencies) * 1000


def _load(url: str, token: str, requests: int, concurrency: int) -> Run:
    """In the load process: `requests` POSTs of the query, `concurrency` in flight."""
    return asyncio.run(_load_async(url, token, requests, concurrency))


async def _load_async(url: str, token: str, requests: int, concurrency: int) -> Run:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    remaining = requests
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.post(url, json={"query": QUERY}, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(seconds=seconds, latencies=latencies)


def _task(row: asyncpg.Record) -> dict[str, Any]:
    """The fields the GraphQL query asks for, named and formatted as the gateway answers them."""
    agent = row["agent_id"]
    return {
        "id": str(row["task_id"]),
        "ownerId": str(row["owner_id"]),
        "taskType": row["task_type"],
        "priority": row["priority"],
        "status": TaskStatus(row["status"]).name,
        "attempts": row["attempts"],
        "maxAttempts": row["max_attempts"],
        "agentId": str(agent) if agent is not None else None,
        "progress": row["progress"],
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
        "version": row["version"],
    }


def baseline_app(pool: asyncpg.Pool) -> Starlette:
    """One JSON route: the gateway's SQL for a page of tasks, the same fields and cursor."""

    async def tasks(_: Request) -> Response:
        rows = await tasks_page(pool, first=PAGE)
        cursor = (
            encode_cursor(rows[-1]["created_at"], rows[-1]["task_id"])
            if len(rows) == PAGE
            else None
        )
        return JSONResponse(
            {"data": {"tasks": {"items": [_task(r) for r in rows], "nextCursor": cursor}}}
        )

    return Starlette(routes=[Route("/tasks", tasks, methods=["GET", "POST"])])


@contextlib.asynccontextmanager
async def serve_baseline(pool: asyncpg.Pool, port: int, drain_timeout: float) -> AsyncIterator[str]:
    """The baseline app on the uvicorn `serve_gateway` serves the gateway with, configured alike
    (the comparison is of the apps, not of two server setups); yields its `/tasks` URL."""
    async with serve_asgi(
        baseline_app(pool), name="baseline", host=LOOPBACK, port=port, drain_timeout=drain_timeout
    ) as url:
        yield f"{url}/tasks"


def bench_settings(root: Path) -> Settings:
    """A stack of its own under `root`, every port free, limits that never refuse."""
    return isolated_settings(
        root,
        admin_password=SecretStr(ADMIN_PASSWORD),
        access_token_seconds=3600,
        projection_wait_seconds=30.0,
        rate_limit_per_ip=UNLIMITED,
        rate_limit_per_user=UNLIMITED,
        rate_limit_burst=UNLIMITED,
        # The platform's own overload bound, which the tests' settings raise.
        gateway_max_loop_lag=Settings.model_fields["gateway_max_loop_lag"].default,
    )


async def seed(platform: Platform) -> None:
    """TASKS tasks through the command bus, then wait until the `tasks` read model has them."""
    bus = platform.commands.bus
    gate = asyncio.Semaphore(SUBMITS_IN_FLIGHT)
    owner = uuid7()

    async def submit(priority: int) -> int:
        async with gate:
            command = SubmitTask(
                task_id=uuid7(), owner_id=owner, task_type="code.generate", priority=priority
            )
            result = await bus.execute(
                command, CommandContext(command_id=str(uuid7()), actor=ACTOR)
            )
            return result.sequence

    sequences = await asyncio.gather(*(submit(1 + n % 9) for n in range(TASKS)))
    await wait_for_sequence(platform.postgres, "tasks", max(sequences), timeout=120)


async def sign_in(url: str, username: str) -> str:
    """The admin's access token, from the gateway's login mutation."""
    mutation = (
        "mutation ($l: String!, $p: String!) { login(login: $l, password: $p) { accessToken } }"
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url, json={"query": mutation, "variables": {"l": username, "p": ADMIN_PASSWORD}}
        )
    body = response.json()
    if "errors" in body:
        raise RuntimeError(f"login failed: {body['errors']}")
    return str(body["data"]["login"]["accessToken"])


async def same_answer(ours_url: str, baseline_url: str, token: str) -> None:
    """Both servers answer the same page (so the comparison is like for like)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as client:
        ours = (await client.post(ours_url, json={"query": QUERY}, headers=headers)).json()
        base = (await client.post(baseline_url, json={"query": QUERY}, headers=headers)).json()
    if ours != base:
        raise RuntimeError(f"the answers differ:\nours {ours}\nbaseline {base}")
    if len(ours["data"]["tasks"]["items"]) != PAGE:
        raise RuntimeError(f"expected {PAGE} tasks, got {ours}")


def _line(name: str, ours: float, baseline: float, ratio: float, unit: str) -> None:
    print(f"{name:<34} {ours:>10.1f} {baseline:>10.1f}  {ratio:>5.2f}x  ({unit})")


def report(ours: Run, baseline: Run) -> None:
    """One line per figure."""
    print(
        f"# GraphQL tasks(first: {PAGE}), 12 fields: {REQUESTS:,} requests after {WARMUP:,}"
        f" warm-up, {CONCURRENCY} in flight, {ROUNDS} alternating rounds, {TASKS:,} tasks seeded,"
        " client in its own process"
    )
    print(
        "# ratio: requests/s ours / baseline; latencies and CPU baseline / ours (higher is better)"
    )
    print(f"{'name':<34} {'ours':>10} {'baseline':>10}  ratio")
    _line("graphql tasks page", ours.rate, baseline.rate, ours.rate / baseline.rate, "requests/s")
    for label, fraction in (("p50", 0.50), ("p99", 0.99)):
        mine, base = ours.percentile(fraction), baseline.percentile(fraction)
        _line(f"graphql tasks page {label}", mine, base, base / mine, "ms")
    mine, base = ours.cpu_per_request, baseline.cpu_per_request
    print(
        f"{'graphql tasks page server CPU':<34} {mine:>10.2f} {base:>10.2f}  {base / mine:>5.2f}x"
        "  (ms a request)"
    )


async def measure(
    pool: ProcessPoolExecutor, targets: Sequence[tuple[str, str]], token: str
) -> list[Run]:
    """Warm each target up, then time them in ROUNDS alternating rounds (ABBA…) from the load
    process, so that other load on the machine weighs on both alike; the rounds are summed."""
    loop = asyncio.get_running_loop()
    for _, url in targets:
        await loop.run_in_executor(pool, _load, url, token, WARMUP, CONCURRENCY)
    rounds: dict[str, list[Run]] = {name: [] for name, _ in targets}
    for index in range(ROUNDS):
        order = targets if index % 2 == 0 else list(reversed(targets))
        for name, url in order:
            cpu = time.process_time()
            run = await loop.run_in_executor(
                pool, _load, url, token, REQUESTS // ROUNDS, CONCURRENCY
            )
            rounds[name].append(replace(run, cpu_seconds=time.process_time() - cpu))
    return [
        Run(
            seconds=sum(r.seconds for r in rounds[name]),
            latencies=[latency for r in rounds[name] for latency in r.latencies],
            cpu_seconds=sum(r.cpu_seconds for r in rounds[name]),
        )
        for name, _ in targets
    ]


@contextlib.asynccontextmanager
async def serving_platform(
    settings: Settings, stack: Stack, projectors: tuple[str, ...] = ("users", "tasks")
) -> AsyncIterator[Platform]:
    """The platform as `sutazai up` runs it for the gateway, without agents: `projectors`
    running and the admin account made."""
    passwords = cheap_hasher()
    async with (
        connect(settings, stack, passwords=passwords) as platform,
        run_projections(settings, platform.store, platform.postgres, only=projectors),
    ):
        await ensure_admin(platform)
        yield platform


async def main() -> None:
    configure_logging(level="warning")
    async with (
        bench_stack(bench_settings, SERVERS) as (settings, stack),
        serving_platform(settings, stack) as platform,
    ):
        await seed(platform)
        with spawned_loader() as loader:
            async with (
                serve_gateway(platform, free_port()) as gateway_url,
                serve_baseline(
                    platform.postgres, free_port(), settings.drain_timeout
                ) as baseline_url,
            ):
                ours_url = f"{gateway_url}/graphql"
                token = await sign_in(ours_url, settings.admin_username)
                await same_answer(ours_url, baseline_url, token)
                baseline, ours = await measure(
                    loader, [("baseline", baseline_url), ("ours", ours_url)], token
                )
                report(ours, baseline)


if __name__ == "__main__":
    asyncio.run(main())
