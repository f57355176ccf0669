"""A small GraphQL client for the end-to-end tests: HTTP queries and graphql-transport-ws."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from uuid_utils.compat import uuid4


@dataclass
class Session:
    """A signed-in user's tokens."""

    user_id: str
    username: str
    access_token: str
    refresh_token: str


class GraphQLClient:
    """Posts operations to /graphql, optionally as a signed-in user."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self.http.aclose()

    async def call(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The whole response body (data and errors)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        body["status"] = response.status_code
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The data of a call that must succeed."""
        body = await self.call(query, variables, token)
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    async def sign_up(
        self, username: str | None = None, password: str = "correct horse"
    ) -> Session:
        """Register a fresh user and sign in."""
        username = username or f"u{uuid4().hex[:12]}"
        await self.data(
            "mutation ($i: RegisterInput!) { register(input: $i) { aggregateId } }",
            {"i": {"email": f"{username}@example.com", "username": username, "password": password}},
        )
        return await self.sign_in(username, password)

    async def sign_in(self, login: str, password: str) -> Session:
        """Sign in and keep the tokens."""
        data = await self.data(
            "mutation ($l: String!, $p: String!) { login(login: $l, password: $p) {"
            " accessToken refreshToken user { id username } } }",
            {"l": login, "p": password},
        )
        login_data = data["login"]
        return Session(
            user_id=login_data["user"]["id"],
            username=login_data["user"]["username"],
            access_token=login_data["accessToken"],
            refresh_token=login_data["refreshToken"],
        )


class Subscription:
    """One graphql-transport-ws connection carrying one subscription."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def next(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next `next` payload (raises on `error`, or TimeoutError)."""
        while True:
            frame = await asyncio.wait_for(self._connection.recv(), timeout)
            # The protocol is JSON in text frames: standard clients refuse binary ones.
            assert isinstance(frame, str), f"a binary frame: {frame!r}"
            message = json.loads(frame)
            if message["type"] == "next":
                payload: dict[str, Any] = message["payload"]
                return payload
            if message["type"] == "error":
                raise RuntimeError(message["payload"])
            if message["type"] == "complete":
                raise EOFError("the subscription completed")
            if message["type"] == "ping":
                await self._connection.send(json.dumps({"type": "pong"}))


@contextlib.asynccontextmanager
async def subscribe(
    url: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> AsyncIterator[Subscription]:
    """Open a websocket, init (with the token), subscribe; close on exit."""
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as connection:  # type: ignore[list-item]
        init: dict[str, Any] = {"type": "connection_init", "payload": {}}
        if token:
            init["payload"] = {"authorization": f"Bearer {token}"}
        await connection.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(connection.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        await connection.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables or {}},
                }
            )
        )
        yield Subscription(connection)
