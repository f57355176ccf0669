"""What the benchmarks share: a stack of their own, set up as the tests set up theirs."""

from __future__ import annotations

from tests.servers import free_port, isolated_settings

__all__ = ["free_port", "isolated_settings"]
