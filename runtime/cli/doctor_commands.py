"""`sutazai doctor`: every server, stream and consumer checked, one actionable line per problem."""

from __future__ import annotations
