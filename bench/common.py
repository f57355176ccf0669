"""What the benchmarks share."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from runtime.settings import Settings


def free_port() -> int:
    """A port nothing listens on right now, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def isolated_settings(root: Path, **overrides: Any) -> Settings:
    """Settings for a stack of the bench's own under `root`: every port free, no .env read."""
    values: dict[str, Any] = {
        "data_dir": root,
        "nats_port": free_port(),
        "nats_monitor_port": free_port(),
        "postgres_port": free_port(),
        "redis_port": free_port(),
        "graph_port": free_port(),
        "model_port": free_port(),
        "gateway_port": free_port(),
        "qdrant_location": ":memory:",
        "startup_timeout": 30.0,
        "stop_timeout": 10.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)
