"""`sutazai backup` and `sutazai restore`: a consistent copy of the log and its buckets."""

from __future__ import annotations
