"""The layout waits for a NATS cluster that is still forming, rather than fail its first start.

Two nodes of three are a quorum, so JetStream answers; but a stream of three replicas cannot be
placed until the third node joins, and nats-server refuses it ("no suitable peers for placement").
Nodes of a cluster start in any order (Kubernetes, `sutazai up`), so the platform's setup retries
that refusal for a bounded time.
"""

from __future__ import annotations

import asyncio
import shutil

from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM, StreamLayout
from runtime.servers.base import ServerOptions
from runtime.servers.nats import ClusterPlace, NatsServer
from tests.servers import free_port, scratch_dir


async def test_setup_on_two_nodes_of_three_completes_once_the_third_joins() -> None:
    root = scratch_dir()
    route_ports = (free_port(), free_port(), free_port())
    nodes = [
        NatsServer(
            ServerOptions(root=root, startup_timeout=30, stop_timeout=5),
            port=free_port(),
            monitor_port=free_port(),
            cluster=ClusterPlace(node=node, route_ports=route_ports),
        )
        for node in (1, 2, 3)
    ]
    try:
        await asyncio.gather(nodes[0].start(), nodes[1].start())
        store = await EventStore.connect(nodes[0].url, timeout=5.0)
        try:
            setup = asyncio.create_task(store.setup(StreamLayout(replicas=3)))
            # Still waiting while two servers are all the cluster knows (refused at once before).
            done, _ = await asyncio.wait({setup}, timeout=2.0)
            assert not done, setup.exception()
            await nodes[2].start()
            await asyncio.wait_for(setup, timeout=40.0)
            info = await store.jetstream().stream_info(EVENTS_STREAM)
            assert info.config.num_replicas == 3
        finally:
            await store.client.close()
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))
        shutil.rmtree(root, ignore_errors=True)
