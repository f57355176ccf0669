"""What a user feels: from a `submitTask` mutation to its answer, to the read model, to the push.

Starts its own servers (a `Stack` on free loopback ports, data in a temp dir) and runs the
gateway and the projectors as `sutazai up` does, without agents (a submitted task stays pending:
what is measured is the write path, not the model). Rate limits are raised out of the way.

The load comes from a process of its own (its CPU is not the servers'): an open-loop generator
that sends `submitTask` at a fixed rate whatever the answers do (SUTAZAI_BENCH_RATES, default
50,100,200,400 per second, each for SUTAZAI_BENCH_SECONDS, default 10), every tenth with
`waitForProjection: true`, while one `events` subscription over graphql-transport-ws (gql, a
client our users use) follows every TaskSubmitted. Send and receive times are read in that
process, on one clock. For each rate it prints p50 / p99 / max of:
- mutation → response (the nine in ten sent without waiting),
- mutation → read model visible (the answer of those sent with `waitForProjection`),
- mutation → subscription push,
with how many were answered, refused (a typed GraphQL error) or not answered in 10 s; and last
the highest rate held with p99 of the push under 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import aiohttp
from gql import Client, gql
from gql.client import AsyncClientSession
from gql.transport.websockets import WebsocketsTransport

from bench.common import bench_stack, free_port, spawned_loader
from bench.graphql import SERVERS, bench_settings, serving_platform, sign_in
from runtime.gateway_wiring import serve_gateway
from runtime.structured_logging import configure_logging

RATES = [int(r) for r in os.environ.get("SUTAZAI_BENCH_RATES", "50,100,200,400").split(",")]
SECONDS = float(os.environ.get("SUTAZAI_BENCH_SECONDS", "10"))
TIMEOUT = 10.0
WAIT_EVERY = 10
"""One request in this many asks `waitForProjection`."""
GOAL_MS = 50.0

SUBMIT = """
mutation ($m: String!, $wait: Boolean!) {
  submitTask(input: {taskType: "code.generate", payload: {prompt: "bench"}},
             clientMutationId: $m, waitForProjection: $wait) { aggregateId projected }
}
"""
PUSHES = 'subscription { events(filter: {eventType: "TaskSubmitted"}) { aggregateId } }'


@dataclass
class Figures:
    """One rate's measurements, in milliseconds."""

    rate: int
    sent: int = 0
    response: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    push: list[float] = field(default_factory=list)
    refused: int = 0
    refusal: list[float] = field(default_factory=list)
    """How long a refused request took to be refused."""
    unanswered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)
    """How late the generator sent each request (it shares the machine): its own queue."""
    server_cpu: float = 0.0
    """CPU seconds of the process serving the gateway and the projectors meanwhile."""


def _percentiles(values: list[float]) -> str:
    if not values:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered):>8.1f} {p99:>8.1f} {ordered[-1]:>8.1f}"


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("inf")


def _drive(url: str, token: str, rate: int, seconds: float) -> Figures:
    return asyncio.run(_drive_async(url, token, rate, seconds))


async def _drive_async(url: str, token: str, rate: int, seconds: float) -> Figures:
    """Open loop: request n leaves at start + n / rate, answered or not."""
    figures = Figures(rate)
    expected: set[str] | None = None
    """The tasks whose push is awaited, once every request is answered."""
    sent_at: dict[str, float] = {}
    pushed: dict[str, float] = {}
    transport = WebsocketsTransport(
        url=url.replace("http://", "ws://"),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {token}"},
    )
    # aiohttp, not httpx: at 400 requests/s httpx's pool took a whole core of the generator's
    # process, so that requests left seconds late and the bench measured its own queue.
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        Client(transport=transport) as session,
        aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        ) as http,
    ):
        assert isinstance(session, AsyncClientSession)
        listening = asyncio.Event()

        all_pushed = asyncio.Event()

        async def follow() -> None:
            subscription = session.subscribe(gql(PUSHES))
            listening.set()
            async for event in subscription:
                pushed[str(event["events"]["aggregateId"])] = time.perf_counter()
                if expected is not None and expected <= pushed.keys():
                    all_pushed.set()

        follower = asyncio.create_task(follow())
        await listening.wait()
        await asyncio.sleep(0.5)  # the subscription is live on the server before the first send

        async def one(index: int, started: float) -> None:
            """`started`: when the request was due (open loop: lateness counts as waiting)."""
            wait = index % WAIT_EVERY == 0
            figures.lag.append((time.perf_counter() - started) * 1000)
            try:
                async with http.post(
                    url,
                    json={"query": SUBMIT, "variables": {"m": f"b{rate}-{index}", "wait": wait}},
                    headers={"Authorization": f"Bearer {token}"},
                ) as answer:
                    body = await answer.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError):
                figures.unanswered += 1
                return
            elapsed = (time.perf_counter() - started) * 1000
            if body.get("errors"):
                code = str(body["errors"][0].get("extensions", {}).get("code", "ERROR"))
                figures.errors[code] = figures.errors.get(code, 0) + 1
                figures.refused += 1
                figures.refusal.append(elapsed)
                return
            task_id = str(body["data"]["submitTask"]["aggregateId"])
            sent_at[task_id] = started
            (figures.visible if wait else figures.response).append(elapsed)

        start = time.perf_counter()
        requests: list[asyncio.Task[None]] = []
        total = int(rate * seconds)
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            requests.append(asyncio.create_task(one(index, due)))
        figures.sent = total
        await asyncio.gather(*requests)
        expected = set(sent_at)
        if expected <= pushed.keys():
            all_pushed.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_pushed.wait(), TIMEOUT)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    figures.push = [(pushed[t] - sent_at[t]) * 1000 for t in sent_at if t in pushed]
    return figures


def held_rate(all_figures: list[Figures]) -> int:
    """The highest rate answered whole (nothing refused or lost) with p99 of the push in goal."""
    held = 0
    for f in all_figures:
        complete = f.refused == 0 and f.unanswered == 0 and len(f.push) == f.sent
        if complete and _p99(f.push) <= GOAL_MS:
            held = max(held, f.rate)
    return held


def report(all_figures: list[Figures]) -> None:
    """A block of lines per rate, the highest rate held, then one line per goal."""
    print(
        f"# submitTask through GraphQL at a fixed open-loop rate for {SECONDS:g} s each, one in"
        f" {WAIT_EVERY} with waitForProjection; one events subscriber; load in its own process;"
        " times from when each request was due"
    )
    print(f"{'rate/s':>6} {'measure':<22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   counts")
    for f in all_figures:
        accepted = len(f.response) + len(f.visible)
        counts = (
            f"sent {f.sent}, accepted {accepted}, refused {f.refused} {f.errors or ''},"
            f" unanswered {f.unanswered}, pushed {len(f.push)}"
        )
        print(f"{f.rate:>6} {'mutation → response':<22} {_percentiles(f.response)}   {counts}")
        print(f"{'':>6} {'mutation → read model':<22} {_percentiles(f.visible)}")
        print(f"{'':>6} {'mutation → push':<22} {_percentiles(f.push)}")
        if f.refusal:
            print(f"{'':>6} {'request → refusal':<22} {_percentiles(f.refusal)}")
        print(f"{'':>6} {'generator lateness':<22} {_percentiles(f.lag)}")
        print(
            f"{'':>6} server process CPU {f.server_cpu * 1000 / max(f.sent, 1):.2f} ms a request"
            f" ({f.server_cpu / (f.sent / f.rate):.0%} of a core; gateway and projectors)"
        )
    held = held_rate(all_figures)
    print(f"highest rate held with p99 mutation → push <= {GOAL_MS:g} ms: {held or 'none'}/s")
    by_rate = {f.rate: f for f in all_figures}
    if 200 in by_rate:
        print(f"{'e2e p99 push at 200/s (ms)':<40} {_p99(by_rate[200].push):>10.1f}  goal <= 25")
    for times in (2, 4):
        over = by_rate.get(held * times)
        if held and over is not None:
            answered = over.response + over.visible
            counts = f"({over.rate}/s: accepted {len(answered)}, refused {over.refused})"
            if times == 2:
                print(
                    f"{f'e2e p99 accepted at {times}x capacity (ms)':<40}"
                    f" {_p99(answered):>10.1f}  goal <= 100  {counts}"
                )
            else:
                print(f"# at {times}x capacity: accepted p99 {_p99(answered):.1f} ms {counts}")
            slowest = max([*answered, *over.refusal], default=0.0)
            print(
                f"{f'e2e slowest answer at {times}x capacity (ms)':<40} {slowest:>10.1f}"
                "  goal <= 10000"
            )


async def main() -> None:
    configure_logging(level="warning")
    async with (
        bench_stack(bench_settings, SERVERS) as (settings, stack),
        serving_platform(settings, stack) as platform,
        serve_gateway(platform, free_port()) as gateway_url,
    ):
        url = f"{gateway_url}/graphql"
        token = await sign_in(url, settings.admin_username)
        with spawned_loader() as loader:
            report(await _all_rates(loader, url, token))


async def _all_rates(loader: ProcessPoolExecutor, url: str, token: str) -> list[Figures]:
    """RATES, then twice and four times the highest rate held (overload), if not yet run."""
    loop = asyncio.get_running_loop()
    figures: list[Figures] = []
    rates = list(RATES)
    while rates:
        rate = rates.pop(0)
        print(f"# {rate}/s …", flush=True)
        cpu = time.process_time()
        ran = await loop.run_in_executor(loader, _drive, url, token, rate, SECONDS)
        ran.server_cpu = time.process_time() - cpu
        figures.append(ran)
        if not rates:
            held = held_rate(figures)
            done = {f.rate for f in figures}
            rates = [held * n for n in (2, 4) if held and held * n not in done]
    return figures


if __name__ == "__main__":
    asyncio.run(main())
