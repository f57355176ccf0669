"""How well the agents answer on the real model: success rates and latencies of a fixed prompt set.

Starts a whole stack of its own (NATS, PostgreSQL, Redis, the graph and the model server, on free
loopback ports, data in a temp dir) and, in this process, the platform as `sutazai up` runs it:
every projector and the graph projection, the task coordinator, the code assistant, the document
assistant, the orchestrator and the GraphQL gateway. Then, through GraphQL like a user (signed up
and signed in), it uploads the documents of `bench/documents/`, waits until they are indexed and
submits, SUTAZAI_BENCH_CONCURRENCY at a time (default 4: the model server generates one answer at
a time, so more would only queue):

- code tasks: `code.generate`, `code.explain` and `code.review`, fixed prompts;
- `rag.ask` questions, each answered by exactly one of the documents (named with the question);
- workflows: goals that the orchestrator plans into child tasks.

Each task is timed from its submission until the gateway shows it in a terminal status (polled).
Prints a table per category: tasks, completed, completed with valid output (code: a non-empty
text, or a review with a verdict; rag: an answer with a citation; workflows: completed, also with
failures of optional steps), for rag the first citation being the expected document, for
workflows every child completed, and latency p50/p90/max; then the goals, PASS or MISS each (it
reports, it does not assert), and the failures with their cause.

`--quick` runs a few of each, for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from uuid_utils.compat import uuid4

from bench.common import bench_stack, isolated_settings
from runtime.agents import AgentOptions
from runtime.settings import Settings
from runtime.stack import Stack
from runtime.structured_logging import configure_logging
from tests.serving import serve_platform

CONCURRENCY = int(os.environ.get("SUTAZAI_BENCH_CONCURRENCY", "4"))
DOCUMENTS = Path(__file__).parent / "documents"
AGENTS = ("task-coordinator", "code-assistant", "document-assistant", "orchestrator")
REPLICA = "quality"
UNLIMITED = 1e9  # the rate limiter stays on but never refuses the bench's polling
POLL_SECONDS = 0.25
TASK_TIMEOUT = 600.0
"""Seconds a task may take from submission to a terminal status before it counts as stuck."""
TERMINAL = ("COMPLETED", "COMPLETED_WITH_FAILURES", "FAILED", "CANCELLED", "TIMED_OUT")
GOALS = (
    ("code", "valid", 0.95, "code tasks completed with valid output"),
    ("rag", "right_document", 0.80, "rag answers citing the right document first"),
    ("workflow", "fully_completed", 0.80, "workflows fully completed"),
)

CODE_TASKS: tuple[tuple[str, str], ...] = (
    ("code.generate", "a function that returns the n-th Fibonacci number"),
    ("code.generate", "a function that checks whether a string is a palindrome"),
    ("code.generate", "a function that counts the words in a sentence"),
    ("code.generate", "a function that flattens a list of lists"),
    ("code.generate", "a function that converts Celsius to Fahrenheit"),
    ("code.generate", "a function that returns the largest of three numbers"),
    ("code.generate", "a function that removes duplicates from a list, keeping the order"),
    ("code.generate", "a class for a stack with push, pop and peek"),
    ("code.explain", "def square(x):\n    return x * x"),
    ("code.explain", "total = sum(n for n in range(10) if n % 2 == 0)"),
    ("code.explain", "def greet(name):\n    return f'Hello, {name}!'"),
    ("code.explain", "words = sorted(text.split(), key=len)"),
    ("code.explain", "with open('notes.txt') as f:\n    lines = f.readlines()"),
    ("code.explain", "def is_even(n):\n    return n % 2 == 0"),
    ("code.explain", "counts = {}\nfor c in s:\n    counts[c] = counts.get(c, 0) + 1"),
    ("code.review", "def divide(a, b):\n    return a / b"),
    ("code.review", "def first(items):\n    return items[0]"),
    ("code.review", "def add(a, b):\n    return a + b"),
    ("code.review", "password = 'hunter2'\ndef login(p):\n    return p == password"),
    ("code.review", "def read(path):\n    f = open(path)\n    return f.read()"),
    ("code.review", "def average(xs):\n    return sum(xs) / len(xs)"),
    ("code.review", "import os\ndef run(cmd):\n    os.system(cmd)"),
)
"""(task type, prompt or code): 8 to generate, 7 to explain, 7 to review."""

RAG_QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("How tall is the Quillhaven Lighthouse?", "lighthouse", "41"),
    ("Who built the Quillhaven Lighthouse?", "lighthouse", "Marlowe"),
    ("How many stones does each player start with in Zentaro?", "zentaro", "nine|9"),
    ("Who designed the game Zentaro?", "zentaro", "Korhonen"),
    (
        "What prize does the fastest team win at the Marrowbrook wheel roll?",
        "cheese_festival",
        "Copper Ladle",
    ),
    ("How long is Old Saffron cheese aged?", "cheese_festival", "18"),
    ("How much does the Vellicor-7 probe weigh?", "probe", "860"),
    ("What is the name of the drill on the Vellicor-7 probe?", "probe", "Mole"),
    (
        "How many passengers does the Orlinsk Harbour Line carry on a weekday?",
        "tram_network",
        "48,000",
    ),
    ("What colour are the Orlinsk trams painted?", "tram_network", "teal"),
)
"""(question, the document that answers it (its file's stem), the fact the answer should state:
any of its `|`-separated spellings)."""

WORKFLOW_GOALS: tuple[str, ...] = (
    "Write a fizzbuzz function, review it, then explain it.",
    "Write a Python function that reverses a string, then explain how it works.",
    "Write a function that checks whether a number is prime, then review it.",
    "Write a function that sorts a list of names by length, then explain it.",
    "Write a function that sums the digits of a number, review it, then explain it.",
)

SIGN_UP = "mutation ($i: RegisterInput!) { register(input: $i) { aggregateId } }"
SIGN_IN = "mutation ($l: String!, $p: String!) { login(login: $l, password: $p) { accessToken } }"
ADD_DOCUMENT = (
    "mutation ($t: String!, $c: String!) { addDocument(input: {title: $t, content: $c}) {"
    " aggregateId } }"
)
DOCUMENT = "query ($id: ID!) { document(id: $id) { status error } }"
SUBMIT = (
    "mutation ($type: TaskType!, $payload: JSON, $m: String) {"
    " submitTask(input: {taskType: $type, payload: $payload}, clientMutationId: $m) {"
    " aggregateId } }"
)
HTTP_ATTEMPTS = 3
"""Tries of a request whose connection broke or timed out (a loaded machine's hiccup)."""
TASK = "query ($id: ID!) { task(id: $id) { status result error } }"
USER_PASSWORD = "bench user password"


@dataclass(frozen=True)
class Case:
    """One task to submit and what a good answer to it is."""

    category: str
    """`code`, `rag` or `workflow`."""
    task_type: str
    payload: dict[str, Any]
    label: str
    document: str | None = None
    """rag: the document (its file's stem) that holds the answer."""
    fact: str | None = None
    """rag: a fact the answer should state."""


@dataclass
class Outcome:
    """What became of one case."""

    case: Case
    status: str
    latency: float
    result: Any = None
    error: Any = None
    checks: dict[str, bool] = field(default_factory=dict)
    """`completed`, `valid`, and per category `right_document`/`fact` or `fully_completed`."""

    @property
    def good(self) -> bool:
        """Every check a goal counts passed (the stated fact is reported, not a goal)."""
        return all(ok for name, ok in self.checks.items() if name != "fact")

    def why(self) -> str:
        """A short cause for an outcome that is not fully good."""
        if self.error:
            error = self.error if isinstance(self.error, dict) else {"message": str(self.error)}
            return f"{error.get('code', '')} {str(error.get('message', ''))[:160]}".strip()
        if self.case.category == "workflow" and isinstance(self.result, dict):
            steps = self.result.get("steps") or []
            return ", ".join(
                f"{s.get('task_type')}:{s.get('status')}"
                + (f" ({(s.get('error') or {}).get('code')})" if s.get("error") else "")
                for s in steps
            )
        if self.case.category == "rag" and isinstance(self.result, dict):
            return f"answer {str(self.result.get('answer', ''))[:120]!r}"
        return f"result {str(self.result)[:160]!r}"


def cases(quick: bool) -> list[Case]:
    """The prompt set, or a few of each kind for `--quick`."""
    code = CODE_TASKS
    rag = RAG_QUESTIONS
    workflows = WORKFLOW_GOALS
    if quick:
        code = tuple(c for kind in ("generate", "explain", "review") for c in _of(kind)[:1])
        rag, workflows = rag[::5], workflows[:1]
    chosen = [
        Case("code", kind, _code_payload(kind, text), f"{kind} {_first_line(text)}")
        for kind, text in code
    ]
    chosen += [
        Case("rag", "rag.ask", {"question": q}, f"rag.ask {q}", document=doc, fact=fact)
        for q, doc, fact in rag
    ]
    chosen += [
        Case("workflow", "workflow", {"prompt": goal}, f"workflow {goal}") for goal in workflows
    ]
    return chosen


def _of(kind: str) -> list[tuple[str, str]]:
    return [c for c in CODE_TASKS if c[0] == f"code.{kind}"]


def _code_payload(kind: str, text: str) -> dict[str, Any]:
    return {"prompt": text} if kind == "code.generate" else {"code": text}


def load_documents(folder: Path = DOCUMENTS) -> dict[str, str]:
    """The shipped documents' texts by file stem."""
    return {path.stem: path.read_text() for path in sorted(folder.glob("*.md"))}


def _first_line(text: str) -> str:
    return text.splitlines()[0][:60]


# -- judging answers -------------------------------------------------------------------------


def judge(outcome: Outcome, documents: dict[str, str]) -> None:
    """Fill in the outcome's checks (see the module's notes)."""
    result = outcome.result if isinstance(outcome.result, dict) else {}
    category = outcome.case.category
    checks = outcome.checks
    if category == "workflow":
        checks["completed"] = outcome.status in ("COMPLETED", "COMPLETED_WITH_FAILURES")
        checks["valid"] = checks["completed"]
        steps = result.get("steps") or []
        checks["fully_completed"] = (
            outcome.status == "COMPLETED"
            and bool(steps)
            and all(s.get("status") == "completed" for s in steps)
        )
        return
    checks["completed"] = outcome.status == "COMPLETED"
    if category == "code":
        if outcome.case.task_type == "code.review":
            review = result.get("review")
            verdict = review.get("verdict") if isinstance(review, dict) else None
            checks["valid"] = checks["completed"] and verdict in ("approve", "request_changes")
        else:
            checks["valid"] = checks["completed"] and bool(str(result.get("text", "")).strip())
        return
    citations = result.get("citations") or []
    answer = str(result.get("answer", ""))
    checks["valid"] = checks["completed"] and bool(answer.strip()) and bool(citations)
    expected = documents.get(outcome.case.document or "")
    first = citations[0].get("document_id") if citations else None
    checks["right_document"] = checks["valid"] and first == expected
    spellings = (outcome.case.fact or "").lower().split("|")
    checks["fact"] = checks["completed"] and any(s in answer.lower() for s in spellings)


# -- the user's side: GraphQL ----------------------------------------------------------------


class User:
    """A signed-in user posting operations to the gateway."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.token = ""

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of an operation that must succeed; a broken connection is tried again, as
        any client would (a submission carries a clientMutationId: a retry is not a second
        task)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = {"query": query, "variables": variables or {}}
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            try:
                response = await self.http.post("/graphql", json=request, headers=headers)
                break
            except httpx.TransportError:
                if attempt == HTTP_ATTEMPTS:
                    raise
                await asyncio.sleep(attempt)
        body = response.json()
        if body.get("errors") or response.status_code != 200:
            raise RuntimeError(f"{query.split('(')[0]} answered {response.status_code}: {body}")
        data: dict[str, Any] = body["data"]
        return data

    async def sign_up(self, username: str) -> None:
        """Register and sign in."""
        user = {"email": f"{username}@example.com", "username": username, "password": USER_PASSWORD}
        await self.data(SIGN_UP, {"i": user})
        signed_in = await self.data(SIGN_IN, {"l": username, "p": USER_PASSWORD})
        self.token = str(signed_in["login"]["accessToken"])

    async def upload(self, texts: dict[str, str]) -> dict[str, str]:
        """Every document added (titled by its first line) and indexed; their ids by name."""
        ids: dict[str, str] = {}
        for name, text in texts.items():
            title = text.splitlines()[0].lstrip("# ").strip()
            added = await self.data(ADD_DOCUMENT, {"t": title, "c": text})
            ids[name] = str(added["addDocument"]["aggregateId"])
        deadline = time.monotonic() + 300
        for name, document_id in ids.items():
            while True:
                found = (await self.data(DOCUMENT, {"id": document_id}))["document"]
                status = found["status"] if found else None
                if status == "INDEXED":
                    break
                if status == "INDEX_FAILED" or time.monotonic() > deadline:
                    raise RuntimeError(f"document {name} was not indexed: {found}")
                await asyncio.sleep(POLL_SECONDS)
        return ids

    async def run(self, case: Case) -> Outcome:
        """Submit a case's task and wait for a terminal status."""
        started = time.perf_counter()
        submitted = await self.data(
            SUBMIT, {"type": case.task_type, "payload": case.payload, "m": uuid4().hex}
        )
        task_id = submitted["submitTask"]["aggregateId"]
        while True:
            task = (await self.data(TASK, {"id": task_id}))["task"]
            if task and task["status"] in TERMINAL:
                latency = time.perf_counter() - started
                return Outcome(case, task["status"], latency, task["result"], task["error"])
            if time.perf_counter() - started > TASK_TIMEOUT:
                status = task["status"] if task else "UNSEEN"
                error = {"code": "STUCK", "message": f"still {status} after {TASK_TIMEOUT:.0f}s"}
                return Outcome(case, status, time.perf_counter() - started, error=error)
            await asyncio.sleep(POLL_SECONDS)


async def run_all(user: User, chosen: Sequence[Case], documents: dict[str, str]) -> list[Outcome]:
    """Every case, CONCURRENCY in flight; a line as each ends."""
    gate = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def one(case: Case) -> Outcome:
        nonlocal done
        async with gate:
            started = time.perf_counter()
            try:
                outcome = await user.run(case)
            except (httpx.HTTPError, RuntimeError) as error:
                # A refused submission or a broken connection is this case's failure, not the run's.
                message = f"{type(error).__name__}: {error}"
                outcome = Outcome(
                    case,
                    "ERROR",
                    time.perf_counter() - started,
                    error={"code": "BENCH", "message": message},
                )
        judge(outcome, documents)
        done += 1
        mark = "ok  " if outcome.good else "MISS"
        print(
            f"[{done:>2}/{len(chosen)}] {mark} {outcome.status:<23} {outcome.latency:6.1f}s"
            f"  {case.label[:70]!r}",
            flush=True,
        )
        return outcome

    return list(await asyncio.gather(*(one(case) for case in chosen)))


# -- the report ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _share(outcomes: Sequence[Outcome], check: str) -> float:
    return sum(o.checks.get(check, False) for o in outcomes) / len(outcomes) if outcomes else 0.0


def _cell(outcomes: Sequence[Outcome], check: str) -> str:
    hits = sum(o.checks.get(check, False) for o in outcomes)
    return f"{hits} ({_share(outcomes, check):.0%})"


def load_average() -> str:
    """The machine's load average: other work on it slows every answer down."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def report(
    outcomes: Sequence[Outcome], settings: Settings, seconds: float, quick: bool, load: str
) -> None:
    """The table, the goals and the failures."""
    print(
        f"# agent quality: {len(outcomes)} tasks through GraphQL{' (--quick)' if quick else ''},"
        f" {CONCURRENCY} in flight, model {settings.chat_model} on {settings.model_threads}"
        f" thread(s), num_predict {settings.model_max_tokens}, {os.cpu_count()} cores,"
        f" wall {seconds:.0f}s, load average before {load}, after {load_average()}"
    )
    print(
        "# valid: code a non-empty text or a review with a verdict; rag an answer with a"
        " citation; workflow completed (also with failures). Latency: submission to terminal."
    )
    header = (
        f"{'category':<13} {'tasks':>5} {'completed':>11} {'valid':>11} {'right doc':>11}"
        f" {'fully done':>11} {'p50 s':>7} {'p90 s':>7} {'max s':>7}"
    )
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, list[Outcome]]] = [
        (kind, [o for o in outcomes if o.case.task_type == kind])
        for kind in ("code.generate", "code.explain", "code.review")
    ]
    rows += [
        (category, [o for o in outcomes if o.case.category == category])
        for category in ("code", "rag", "workflow")
    ]
    for name, group in rows:
        if not group:
            continue
        latencies = [o.latency for o in group]
        category = group[0].case.category
        right = _cell(group, "right_document") if category == "rag" else "-"
        full = _cell(group, "fully_completed") if category == "workflow" else "-"
        print(
            f"{name:<13} {len(group):>5} {_cell(group, 'completed'):>11}"
            f" {_cell(group, 'valid'):>11} {right:>11} {full:>11}"
            f" {percentile(latencies, 0.5):>7.1f} {percentile(latencies, 0.9):>7.1f}"
            f" {max(latencies):>7.1f}"
        )
    rag = [o for o in outcomes if o.case.category == "rag"]
    if rag:
        print(f"# rag answers stating the expected fact: {_cell(rag, 'fact')}")
    print("goals:")
    for category, check, goal, words in GOALS:
        group = [o for o in outcomes if o.case.category == category]
        share = _share(group, check)
        verdict = "PASS" if group and share >= goal else "MISS"
        print(f"  {verdict}  {words}: {share:.0%} (goal >= {goal:.0%})")
    failed = [o for o in outcomes if not o.good]
    if failed:
        print("not fully good:")
        for outcome in failed:
            missing = ", ".join(n for n, ok in outcome.checks.items() if not ok and n != "fact")
            print(
                f"  {outcome.case.label[:60]!r}: {outcome.status}, not {missing}; {outcome.why()}"
            )
    unstated = [o for o in rag if o.checks.get("completed") and not o.checks.get("fact")]
    if unstated:
        print("rag answers without the expected fact (reported, not a goal):")
        for outcome in unstated:
            print(f"  {outcome.case.label[8:68]!r} ({outcome.case.fact}): {outcome.why()}")


# -- the platform ----------------------------------------------------------------------------


def bench_settings(root: Path) -> Settings:
    """A stack of its own under `root`, every port free, quick sweeps, limits that never refuse."""
    return isolated_settings(
        root,
        admin_password=SecretStr("bench admin password"),
        access_token_seconds=7200,
        heartbeat_seconds=0.5,
        heartbeat_ttl=3.0,
        coordinator_sweep_seconds=0.5,
        projection_wait_seconds=30.0,
        rate_limit_per_ip=UNLIMITED,
        rate_limit_per_user=UNLIMITED,
        rate_limit_burst=UNLIMITED,
    )


@contextlib.asynccontextmanager
async def platform_running(settings: Settings, stack: Stack) -> AsyncIterator[str]:
    """The platform as `sutazai up` runs it, less the system monitor; yields the gateway's URL."""
    agents = AgentOptions(only=AGENTS, replica=REPLICA)
    async with serve_platform(settings, stack, agents=agents) as (_, url):
        yield url


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_quality", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few tasks of each kind")
    quick = parser.parse_args(argv).quick
    configure_logging(level="warning")
    load = load_average()
    chosen = cases(quick)
    texts = load_documents()
    async with bench_stack(bench_settings) as (settings, stack):
        async with (
            platform_running(settings, stack) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            user = User(http)
            await user.sign_up("quality")
            documents = await user.upload(texts)
            print(f"# {len(documents)} documents indexed; {len(chosen)} tasks to run", flush=True)
            started = time.perf_counter()
            outcomes = await run_all(user, chosen, documents)
            seconds = time.perf_counter() - started
        report(outcomes, settings, seconds, quick, load)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
