"""The embedded stack on real servers: health, loopback only, crash and restart, clear failures."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import Iterator

import asyncpg
import nats
import psutil
import pytest
import redis.asyncio as aioredis

from runtime.servers import ExternalServer, ServerStartError
from runtime.servers.postgres import PostgresServer
from runtime.servers.redis import redis_probe
from runtime.stack import Stack
from tests.conftest import ServerFaults
from tests.servers import free_port, isolated_settings, scratch_dir

EMBEDDED = ["nats", "postgres", "redis", "graph", "model"]


def _group(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


async def test_every_server_of_the_stack_answers(stack: Stack) -> None:
    statuses = {status.name: status for status in await stack.status()}
    assert set(statuses) == set(EMBEDDED)
    for status in statuses.values():
        assert status.healthy, status
        assert status.embedded
        assert status.pid is not None
        assert "127.0.0.1" in status.url


async def test_servers_listen_on_loopback_only(stack: Stack) -> None:
    listening: dict[str, set[tuple[str, int]]] = {}
    for name in EMBEDDED:
        pid = stack.embedded(name).pid
        assert pid is not None
        sockets = {
            (conn.laddr.ip, conn.laddr.port)
            for process in _group(pid)
            for conn in process.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        listening[name] = sockets
        assert sockets, f"{name} listens on nothing"
        assert {ip for ip, _ in sockets} == {"127.0.0.1"}, (name, sockets)
    # NATS serves clients and monitoring, both on loopback.
    assert {port for _, port in listening["nats"]} == {
        stack.settings.nats_port,
        stack.settings.nats_monitor_port,
    }


async def _write_marker(stack: Stack, name: str) -> None:
    """Something durable in the server, acknowledged before the crash."""
    if name == "nats":
        client = await nats.connect(stack.nats_url)
        js = client.jetstream()
        await js.add_stream(name="CRASHTEST", subjects=["crashtest.>"])
        ack = await js.publish("crashtest.one", b"survives")
        assert ack.seq >= 1
        await client.close()
    elif name == "postgres":
        connection = await asyncpg.connect(stack.postgres_url)
        await connection.execute("CREATE TABLE IF NOT EXISTS crashtest (note text)")
        await connection.execute("INSERT INTO crashtest VALUES ('survives')")
        await connection.close()
    elif name == "graph":
        graph = aioredis.Redis.from_url(stack.graph_url)
        create = "CREATE (:Note {text: 'survives'})"
        await graph.execute_command("GRAPH.QUERY", "crashtest", create)  # type: ignore[no-untyped-call]
        await graph.aclose()


async def _read_marker(stack: Stack, name: str) -> bool:
    if name == "nats":
        client = await nats.connect(stack.nats_url)
        js = client.jetstream()
        message = await js.get_last_msg("CRASHTEST", "crashtest.one")
        await js.delete_stream("CRASHTEST")
        await client.close()
        return message.data == b"survives"
    if name == "postgres":
        connection = await asyncpg.connect(stack.postgres_url)
        found = await connection.fetchval("SELECT count(*) FROM crashtest WHERE note = 'survives'")
        await connection.execute("DROP TABLE crashtest")
        await connection.close()
        return bool(found)
    if name == "graph":
        graph = aioredis.Redis.from_url(stack.graph_url)
        result = await graph.execute_command(  # type: ignore[no-untyped-call]
            "GRAPH.QUERY", "crashtest", "MATCH (n:Note {text: 'survives'}) RETURN count(n)"
        )
        await graph.execute_command("GRAPH.DELETE", "crashtest")  # type: ignore[no-untyped-call]
        await graph.aclose()
        return bool(result[1][0][0] == 1)
    return True  # Redis is a cache here: it keeps nothing by design.


@pytest.mark.parametrize("name", EMBEDDED)
async def test_a_killed_server_restarts_on_its_data(
    stack: Stack, server_faults: ServerFaults, name: str
) -> None:
    await _write_marker(stack, name)
    server = stack.embedded(name)
    pid = server.pid
    assert pid is not None
    group = _group(pid)

    server_faults.kill(name)

    assert not any(process.is_running() and process.status() != "zombie" for process in group)
    with pytest.raises(Exception):  # noqa: B017,PT011 -- any client error: it is down
        await asyncio.wait_for(server.check(), timeout=3)
    await server_faults.restart(name)
    assert server.pid not in (None, pid)
    await server.check()
    assert await _read_marker(stack, name)


async def test_the_stack_starts_twice_on_the_same_data_dir_and_stops_clean() -> None:
    root = scratch_dir()
    settings = isolated_settings(root)
    try:
        first = Stack(settings)
        await first.start()
        pids = [pid for server in first if (pid := server.pid) is not None]
        processes = [p for pid in pids for p in _group(pid)]
        connection = await asyncpg.connect(first.postgres_url)
        await connection.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        await connection.close()
        await first.stop()
        assert not [p for p in processes if p.is_running() and p.status() != "zombie"]

        second = Stack(settings)
        await second.start()
        try:
            connection = await asyncpg.connect(second.postgres_url)
            assert await connection.fetchval("SELECT n FROM kept") == 7
            await connection.close()
            assert all(status.healthy for status in await second.status())
        finally:
            await second.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _occupied(port: int) -> Iterator[socket.socket]:
    """A listener squatting on `port`, so the server that wants it cannot bind."""
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    try:
        yield squatter
    finally:
        squatter.close()


PORT_SETTING = {
    "nats": "nats_port",
    "postgres": "postgres_port",
    "redis": "redis_port",
    "graph": "graph_port",
    "model": "model_port",
}


@pytest.mark.parametrize("name", EMBEDDED)
async def test_a_server_that_cannot_start_is_named_within_the_deadline(name: str) -> None:
    root = scratch_dir()
    deadline = 15.0
    settings = isolated_settings(root, startup_timeout=deadline)
    port = getattr(settings, PORT_SETTING[name])
    stack = Stack(settings)
    try:
        with _occupied(port):
            started = time.monotonic()
            with pytest.raises(ServerStartError) as raised:
                await stack.start()
            elapsed = time.monotonic() - started
        assert raised.value.server == name
        assert str(raised.value).startswith(name)
        assert str(stack.root / "logs" / f"{name}.log") in str(raised.value)
        assert elapsed < deadline
        # The servers that did come up were stopped again.
        assert all(server.pid is None for server in stack)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_server_that_never_answers_fails_at_its_deadline() -> None:
    port = free_port()
    with _occupied(port):  # accepts connections, never speaks RESP
        server = ExternalServer("redis", f"redis://127.0.0.1:{port}", redis_probe, 1.5)
        started = time.monotonic()
        with pytest.raises(ServerStartError, match=r"^redis did not become healthy within 1.5s"):
            await server.start()
        assert 1.5 <= time.monotonic() - started < 4


async def test_an_external_server_is_checked_not_started(stack: Stack) -> None:
    settings = isolated_settings(
        scratch_dir(),
        nats_url=stack.nats_url,
        postgres_url=stack.postgres_url,
        redis_url=stack.redis_url,
        graph_url=stack.graph_url,
        ollama_host=stack.model_url,
    )
    external = Stack(settings)
    await external.start()
    statuses = await external.status()
    assert all(s.healthy and not s.embedded for s in statuses)
    await external.stop()
    await stack["nats"].check()  # stopping an external stack left the real one running
    shutil.rmtree(settings.data_dir, ignore_errors=True)


async def test_postgres_data_goes_where_the_postgres_user_can_reach_it() -> None:
    root = scratch_dir()
    hidden = root / "private"
    hidden.mkdir(mode=0o700)
    settings = isolated_settings(hidden)
    server = Stack(settings).embedded("postgres")
    assert isinstance(server, PostgresServer)
    try:
        await server.start()
        await server.check()
        if psutil.Process().uids().effective == 0:
            assert not server.data_dir.is_relative_to(hidden)
        else:
            assert server.data_dir.is_relative_to(hidden)
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)
        if not server.data_dir.is_relative_to(root):
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
