"""Session-wide real servers, started once per run, and helpers to crash and restart them."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from commands.bus import CommandBus
from commands.dispatch import CommandDispatcher
from commands.preparation import CommandPreparation, Limits
from eventstore.blobs import BlobStore
from eventstore.store import EventStore
from eventstore.streams import StreamLayout
from projections.migrate import migrate
from runtime.servers.process import reclaim_recorded
from runtime.settings import Settings
from runtime.stack import Stack
from tests.passwords import cheap_hasher
from tests.servers import isolated_settings, scratch_dir, stop_every_server_of_the_run

pytest_plugins = ["tests.hang_guard"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Whatever happened (a failed teardown, a hung test), stop every server the run started."""
    left = stop_every_server_of_the_run()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"stopped servers the tests left running: {', '.join(left)}")


@pytest.fixture(scope="session")
def stack_root() -> Iterator[Path]:
    """Where the session's servers keep their data; removed at the end of the run."""
    root = scratch_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_root() -> Iterator[Path]:
    """A scratch dir for the servers of a test's own (a `sutazai up` it starts, a stack of its
    own); after the test, every server recorded under it is ended (they live in sessions of their
    own, so a failed test would leave them running) and the dir removed."""
    root = scratch_dir()
    yield root
    reclaim_recorded(root / "run")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack_root: Path) -> Settings:
    """Settings of the session's stack."""
    return isolated_settings(stack_root)


@pytest.fixture(scope="session")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    """NATS, PostgreSQL, Redis and the graph store, real, on free loopback ports."""
    servers = Stack(settings)
    await servers.start()
    yield servers
    await servers.stop()


class ServerFaults:
    """Crash a server of the session's stack and bring it back on the same data and port."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._down: set[str] = set()

    def kill(self, name: str) -> None:
        """SIGKILL the server's process group, as a crash would."""
        self._stack.embedded(name).kill()
        self._down.add(name)

    def stopped(self, name: str) -> None:
        """Count a server the test stopped itself as down, so it is started again afterwards."""
        self._down.add(name)

    async def restart(self, name: str) -> None:
        """Start it again on its data dir and port."""
        await self._stack.embedded(name).start()
        self._down.discard(name)

    async def heal(self) -> None:
        """Restart whatever a test left down, so later tests find every server up."""
        for name in sorted(self._down):
            await self.restart(name)


@pytest.fixture
async def server_faults(stack: Stack) -> AsyncIterator[ServerFaults]:
    """Kill -9 and restart helpers for fault tests; every server is up again afterwards."""
    faults = ServerFaults(stack)
    yield faults
    await faults.heal()


@pytest.fixture(scope="session")
async def event_store(stack: Stack) -> AsyncIterator[EventStore]:
    """The event store on the session's NATS, its streams and buckets set up."""
    store = await EventStore.connect(stack.nats_url, timeout=2.0, name="tests")
    await store.setup(StreamLayout())
    yield store
    await store.client.close()


@pytest.fixture(scope="session")
def nats_client(event_store: EventStore) -> NatsClient:
    """The session's NATS connection (the event store's)."""
    return event_store.client


@pytest.fixture(scope="session")
def bus(event_store: EventStore) -> CommandBus:
    """The command bus over the session's event store."""
    return CommandBus(event_store)


@pytest.fixture(scope="session")
def dispatcher(bus: CommandBus) -> CommandDispatcher:
    """Commands by name over the session's bus, with small limits to test them."""
    limits = Limits(max_payload_bytes=4096, max_document_bytes=200_000, inline_document_bytes=1024)
    # Cheap argon2 parameters: the tests check the flow, not the hash's cost.
    hasher = cheap_hasher()
    return CommandDispatcher(bus, CommandPreparation(BlobStore(bus.store), limits, hasher))


@pytest.fixture(scope="session")
async def postgres(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session's PostgreSQL, the read-side migrations applied."""
    pool = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=5)
    await migrate(pool)
    yield pool
    await pool.close()
