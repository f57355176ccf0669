"""The `sutazai` command as a person runs it: up, status, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import redis
from uuid_utils.compat import uuid4

from runtime.stack import Stack
from tests.servers import (
    cli_environment,
    isolated_settings,
    run_sutazai,
    start_up,
    wait_for_line,
)


def test_up_serves_until_ctrl_c_and_leaves_no_process_behind(own_root: Path) -> None:
    root = own_root
    settings = isolated_settings(root)
    env = cli_environment(settings)
    up = start_up(env, root)
    try:
        try:
            lines = wait_for_line(up, "SutazAI is up", timeout=90)
        except AssertionError as error:
            logs = {log.name: log.read_text()[-2000:] for log in (root / "logs").glob("*.log")}
            raise AssertionError(f"{error}\nserver logs: {logs}") from None
        # "Up" is said only once every part is live: /readyz agrees at once, no retry.
        ready = httpx.get(f"http://127.0.0.1:{settings.gateway_port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert "Ready: agents, commands, gateway, projections." in "".join(lines)
        # The bootstrap admin's generated password is shown once, and it signs in.
        created = [line for line in lines if "Created the admin user" in line]
        assert len(created) == 1, lines
        password = created[0].split("with password ")[1].split()[0]
        login = httpx.post(
            f"http://127.0.0.1:{settings.gateway_port}/graphql",
            json={
                "query": 'mutation ($p: String!) { login(login: "admin", password: $p)'
                " { user { role } } }",
                "variables": {"p": password},
            },
            timeout=30,
        )
        assert login.json()["data"]["login"]["user"]["role"] == "ADMIN", login.text
        status = run_sutazai(env, "status", cwd=root)
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("nats", "postgres", "redis", "graph", "model"):
            assert name in status.stdout
        assert status.stdout.count("healthy") == 5
        assert f"nats://127.0.0.1:{settings.nats_port}" in status.stdout

        submitted = run_sutazai(env, "task", "submit", "--type", "test.generate", cwd=root)
        assert submitted.returncode == 0, submitted.stderr
        deadline = time.monotonic() + 20
        while True:  # the running projectors pick the task up by themselves
            projections = run_sutazai(
                env, "projections", "status", "--rate-window", "0.1", cwd=root
            )
            rows = [line.split("│") for line in projections.stdout.splitlines() if "│" in line]
            behind = {cells[1].strip(): cells[3].strip() for cells in rows if len(cells) > 4}
            if behind.get("tasks") == "0" and behind.get("event_log") == "0":
                break
            assert time.monotonic() < deadline, projections.stdout + projections.stderr
            time.sleep(0.2)
        graph = redis.Redis(host="127.0.0.1", port=settings.graph_port)
        while True:  # and the graph projection too
            try:
                reply = graph.execute_command(  # type: ignore[no-untyped-call]
                    "GRAPH.RO_QUERY", "sutazai", "MATCH (t:Task) RETURN count(t)"
                )
                if reply[1] == [[1]]:
                    break
            except redis.ResponseError:
                pass  # no graph until its first write
            assert time.monotonic() < deadline, "the graph never showed the task"
            time.sleep(0.2)
        graph.close()

        servers = [
            psutil.Process(int((root / "run" / f"{name}.pid").read_text().split()[0]))
            for name in ("nats", "postgres", "redis", "graph", "model")
        ]
        family = [p for leader in servers for p in [leader, *leader.children(recursive=True)]]

        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert up.wait(timeout=60) == 0
        assert not [p for p in family if p.is_running() and p.status() != "zombie"]
        assert not list((root / "run").glob("*.pid"))
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()


def test_status_says_which_server_is_down(stack: Stack, own_root: Path) -> None:
    settings = isolated_settings(own_root, nats_url=stack.nats_url)
    env = cli_environment(settings)
    env["SUTAZAI_NATS_URL"] = stack.nats_url
    status = run_sutazai(env, "status")
    assert status.returncode == 2  # unavailable
    lines = {line.split()[1]: line for line in status.stdout.splitlines() if "│" in line[:3]}
    assert "healthy" in lines["nats"]
    assert "external" in lines["nats"]
    for name in ("postgres", "redis", "graph"):
        assert "down" in lines[name], status.stdout


def test_task_submit_show_and_events_tail_through_the_cli(stack: Stack) -> None:
    env = cli_environment(stack.settings)

    def sutazai(*args: str) -> subprocess.CompletedProcess[str]:
        return run_sutazai(env, *args)

    command_id = f"cli-{time.time_ns()}"
    submit = ["task", "submit", "--type", "test.review", "--priority", "2"]
    first = sutazai(*submit, "--payload", '{"code": "x = 1"}', "--command-id", command_id)
    assert first.returncode == 0, first.stderr
    again = sutazai(*submit, "--payload", '{"code": "x = 1"}', "--command-id", command_id)
    assert "already submitted" in again.stdout
    task_id = first.stdout.split()[1]
    assert task_id in again.stdout

    shown = sutazai("task", "show", task_id)
    assert shown.returncode == 0, shown.stderr
    assert "pending" in shown.stdout
    assert "test.review" in shown.stdout
    assert "version 1" in shown.stdout

    tail = sutazai(
        "events", "tail", "--no-follow", "--json", "--subject", f"sutazai.events.task.{task_id}.*"
    )
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["event_type"] for line in lines] == ["TaskSubmitted"]
    assert lines[0]["actor"]["kind"] == "user"

    refused = sutazai("task", "submit", "--type", "Not A Type")
    assert refused.returncode == 1
    assert "payload.task_type" in refused.stderr


def test_projections_rebuild_and_verify_through_the_cli(stack: Stack) -> None:
    env = cli_environment(stack.settings)

    def sutazai(*args: str) -> subprocess.CompletedProcess[str]:
        return run_sutazai(env, *args, timeout=120)

    assert sutazai("task", "submit", "--type", "test.explain").returncode == 0
    rebuilt = sutazai("projections", "rebuild", "tasks")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "tasks is now version" in rebuilt.stdout
    verified = sutazai("projections", "verify", "tasks")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "yes" in verified.stdout
    unknown = sutazai("projections", "verify", "invoices")
    assert unknown.returncode == 1  # a user error
    assert "known:" in unknown.stderr


def test_commands_say_plainly_and_quickly_when_the_platform_is_not_up(own_root: Path) -> None:
    root = own_root
    env = cli_environment(isolated_settings(root))  # ports nothing listens on
    env["SUTAZAI_STORE_TIMEOUT"] = "1"
    for command in (["task", "show", str(uuid4())], ["projections", "status"]):
        started = time.monotonic()
        result = run_sutazai(env, *command, cwd=root)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "does not answer" in result.stderr
        assert "Traceback" not in result.stderr
        assert time.monotonic() - started < 15
