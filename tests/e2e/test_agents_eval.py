"""`sutazai agents eval`: the code assistant's recorded runs, run again, side by side.

Recorded runs come from the real platform; the evaluation runs as a user runs it, as a command,
and must leave the log exactly as it found it.
"""

from __future__ import annotations

import json
from pathlib import Path

from eventstore.streams import EVENTS_STREAM
from runtime.agents import AgentOptions, run_agents
from runtime.settings import Settings
from runtime.stack import Stack
from tests.e2e.conftest import (
    QUICK_AGENTS,
    coordinator_caught_up,
    running_gateway,
    until_done,
)
from tests.servers import SUTAZAI, cli_environment, finished

TASKS = [
    ("code.generate", {"prompt": "a function that returns the larger of two numbers"}),
    ("code.review", {"code": "def add(a, b):\n    return a - b\n"}),
]


async def test_agents_eval_runs_recorded_tasks_again_and_appends_nothing(
    settings: Settings, stack: Stack, tmp_path: Path
) -> None:
    async with running_gateway(settings, stack, **QUICK_AGENTS) as gateway:
        js = gateway.platform.nats.jetstream()
        user = await gateway.client.sign_up()
        async with run_agents(gateway.platform, AgentOptions(replica="eval")):
            await coordinator_caught_up(gateway)
            first = None
            ids = []
            for task_type, payload in TASKS:
                submitted = await gateway.submit_task(user.access_token, task_type, payload)
                first = first or int(submitted["sequence"])
                ids.append(submitted["aggregateId"])
            for task_id in ids:
                task = await until_done(gateway, user.access_token, task_id, timeout=180)
                assert task["status"] == "COMPLETED", task
        # The agents are stopped: from here on, only the evaluation could append.
        before = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        details = tmp_path / "eval.json"
        command = [SUTAZAI, "agents", "eval", "--agent", "code-assistant"]
        command += ["--since", str(first), "--model", settings.chat_model]
        command += ["--output", str(details)]
        code, out, err = await finished(command, cli_environment(settings), timeout=300)
        assert code == 0, out + err
        assert "Traceback" not in out + err
        after = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        assert after == before, f"the evaluation appended {after - before} events"

    assert "recorded vs" in out
    assert "Nothing was appended to the log" in out
    rows = {row["task_id"]: row for row in json.loads(details.read_text())}
    assert set(ids) <= set(rows), rows.keys()  # (and any older task assigned since)
    for row in (rows[task_id] for task_id in ids):
        recorded, new = row["recorded"], row["new"]
        assert recorded["status"] == "completed", row
        assert recorded["model"] == settings.chat_model
        assert recorded["calls"] >= 1
        assert recorded["completion_tokens"] > 0
        assert recorded["latency_ms"] > 0
        assert new["model"] == settings.chat_model
        assert new["calls"] >= 1
        assert new["latency_ms"] > 0
        assert row["same_class"] == (recorded["result_class"] == new["result_class"])
    classes = {rows[i]["task_type"]: rows[i]["recorded"]["result_class"] for i in ids}
    assert classes["code.generate"] == "text"
    assert classes["code.review"].startswith("review:")
