"""The graph port: write a batch of statements atomically, read back; FalkorDB or Neo4j."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from falkordb.helpers import stringify_param_value

from projections.graph.cypher import NODE_LABELS, Statement


class GraphPort(Protocol):
    """What the graph projection needs of a graph store."""

    async def ensure_schema(self) -> None:
        """Create the id indexes and uniqueness constraints (idempotent)."""
        ...

    async def write(self, statements: Sequence[Statement]) -> None:
        """Run the statements as one atomic unit."""
        ...

    async def read(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a read query."""
        ...

    async def ping(self) -> None:
        """Returns when the store answers."""
        ...


def _with_params(query: str, params: dict[str, Any]) -> str:
    """FalkorDB takes parameters as a `CYPHER name=value …` header."""
    if not params:
        return query
    header = " ".join(f"{name}={stringify_param_value(value)}" for name, value in params.items())
    return f"CYPHER {header} {query}"


class FalkorGraph:
    """FalkorDB over RESP. A batch is one MULTI/EXEC: Redis runs it whole, with nothing between."""

    def __init__(self, client: aioredis.Redis, name: str = "sutazai") -> None:
        self._client = client
        self._name = name

    async def ensure_schema(self) -> None:
        """An index on `id` per label, then a unique constraint over it."""
        for label in NODE_LABELS:
            key = "name" if label == "ProjectionCheckpoint" else "id"
            try:
                await self._client.execute_command(  # type: ignore[no-untyped-call]
                    "GRAPH.QUERY", self._name, f"CREATE INDEX FOR (n:{label}) ON (n.{key})"
                )
            except aioredis.ResponseError as error:
                if "already indexed" not in str(error):
                    raise
            try:
                await self._client.execute_command(  # type: ignore[no-untyped-call]
                    "GRAPH.CONSTRAINT", "CREATE", self._name, "UNIQUE", "NODE", label,
                    "PROPERTIES", "1", key,
                )  # fmt: skip
            except aioredis.ResponseError as error:
                if "already exists" not in str(error):
                    raise

    async def write(self, statements: Sequence[Statement]) -> None:
        """All statements in one MULTI/EXEC; the first error is raised."""
        async with self._client.pipeline(transaction=True) as pipe:
            for query, params in statements:
                pipe.execute_command("GRAPH.QUERY", self._name, _with_params(query, params))
            results = await pipe.execute(raise_on_error=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def ping(self) -> None:
        """PING over RESP."""
        await self._client.ping()

    async def read(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a read-only query."""
        reply = await self._client.execute_command(  # type: ignore[no-untyped-call]
            "GRAPH.RO_QUERY", self._name, _with_params(query, params or {})
        )
        rows = reply[1] if len(reply) > 1 else []
        return [[_decode(value) for value in row] for row in rows]


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


class Neo4jGraph:
    """Neo4j through the official async driver (production deployments); one transaction a batch."""

    def __init__(
        self, url: str, auth: tuple[str, str] | None = None, database: str = "neo4j"
    ) -> None:
        from neo4j import AsyncGraphDatabase  # only needed where Neo4j is configured

        self._driver = AsyncGraphDatabase.driver(url, auth=auth)
        self._database = database

    async def ensure_schema(self) -> None:
        """A uniqueness constraint per label (it brings its index)."""
        async with self._driver.session(database=self._database) as session:
            for label in NODE_LABELS:
                key = "name" if label == "ProjectionCheckpoint" else "id"
                await session.run(
                    f"CREATE CONSTRAINT IF NOT EXISTS FOR (n:{label}) REQUIRE n.{key} IS UNIQUE"
                )

    async def write(self, statements: Sequence[Statement]) -> None:
        """All statements in one write transaction."""

        async def work(tx: Any) -> None:
            for query, params in statements:
                await tx.run(query, params)

        async with self._driver.session(database=self._database) as session:
            await session.execute_write(work)

    async def read(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a read query."""
        async with self._driver.session(database=self._database) as session:
            result = await session.run(query, params or {})
            return [list(record.values()) async for record in result]

    async def ping(self) -> None:
        """Ask the driver to reach the server."""
        await self._driver.verify_connectivity()

    async def close(self) -> None:
        """Close the driver."""
        await self._driver.close()
