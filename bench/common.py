"""What the benchmarks share: a stack of their own, set up as the tests set up theirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from multiprocessing import get_context
from pathlib import Path

from runtime.settings import Settings
from runtime.stack import Stack
from tests.servers import free_port, isolated_settings, own_nats

__all__ = ["bench_stack", "free_port", "isolated_settings", "own_nats", "spawned_loader"]


@asynccontextmanager
async def bench_stack(
    settings_for: Callable[[Path], Settings], servers: Sequence[str] | None = None
) -> AsyncIterator[tuple[Settings, Stack]]:
    """Settings on a temp dir of its own and its servers (`servers`, or all) started; after:
    stopped (in reverse order) and the dir removed."""
    root = Path(tempfile.mkdtemp(prefix="sutazai-bench-"))
    os.chmod(root, 0o755)  # PostgreSQL runs as its own user and must reach its data dir
    settings = settings_for(root)
    stack = Stack(settings)
    try:
        if servers is None:
            await stack.start()
        else:
            await asyncio.gather(*(stack[name].start() for name in servers))
        yield settings, stack
    finally:
        if servers is None:
            await stack.stop()
        else:
            await asyncio.gather(
                *(stack[name].stop() for name in reversed(servers)), return_exceptions=True
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def spawned_loader() -> Iterator[ProcessPoolExecutor]:
    """One process for the load: spawned, not forked, so it shares no event loop or sockets
    with the servers, and its CPU is not theirs."""
    loader = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    try:
        yield loader
    finally:
        loader.shutdown(wait=True, cancel_futures=True)
