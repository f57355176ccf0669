"""The end-to-end tests' GraphQL clients: httpx for HTTP, Python's `gql` for subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
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


class OpenSubscription:
    """One subscription over a websocket, spoken by Python's `gql` (graphql-transport-ws).

    Messages are read from the moment it opens (gql sends `subscribe` only when first asked for
    a result), so an event that happens before the first `next` is not missed.
    """

    def __init__(self, messages: AsyncGenerator[dict[str, Any], None]) -> None:
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(messages))

    async def _read(self, messages: AsyncGenerator[dict[str, Any], None]) -> None:
        try:
            async for data in messages:
                self._queue.put_nowait({"data": data})
            self._queue.put_nowait(EOFError("the subscription completed"))
        except TransportQueryError as error:
            self._queue.put_nowait(RuntimeError(error.errors))
        except TransportError as error:
            self._queue.put_nowait(_closed_under(error))
        finally:
            await messages.aclose()

    async def next(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next result as `{"data": ...}`.

        Raises RuntimeError with the errors for an `error` message, EOFError when the server
        completed the subscription, the websocket's own ConnectionClosed (its close code in
        `.rcvd`) when the socket closed, and TimeoutError.
        """
        message = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(message, BaseException):
            raise message
        return message

    async def close(self) -> None:
        """Stop reading (the socket closes with the client)."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _closed_under(error: BaseException) -> BaseException:
    """The websocket ConnectionClosed that a gql transport error wraps, else the error."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, websockets.ConnectionClosed):
            return cause
        cause = cause.__cause__ or cause.__context__
    return error


@contextlib.asynccontextmanager
async def subscribe(
    url: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> AsyncIterator[OpenSubscription]:
    """Open a websocket with `gql`, init (with the token), subscribe; close on exit."""
    transport = WebsocketsTransport(
        url=url.replace("http://", "ws://") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {token}"} if token else {},
    )
    async with Client(transport=transport) as session:
        assert isinstance(session, AsyncClientSession)
        request = GraphQLRequest(query, variable_values=variables or {})
        subscription = OpenSubscription(session.subscribe(request))
        try:
            yield subscription
        finally:
            await subscription.close()
