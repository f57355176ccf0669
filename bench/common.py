"""What the benchmarks share."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
