"""Whole-log replays over a NATS connection of their own, speaking the wire protocol directly.

A replay of the whole log asks for millions of bodies. Through nats-py each one is parsed by its
regular-expression parser, built into a `Msg`, queued and handed to a callback task: most of a
rebuild's time (a profile of a 400k-event rebuild: 21 of its 31 s in nats-py's parser,
`_process_msg`, queues and `_wait_for_msgs`). Here the replies of a batch direct get are cut
out of the socket's bytes in one loop and handed over as a list of bodies.

Only what a batch direct get needs is spoken: CONNECT (with the user and password or token of
the URL), SUB, PUB, PING/PONG, MSG/HMSG. A server that asks for TLS or for credentials other
than the URL's is left to nats-py (`wire_address` says None).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import ParseResult

from eventstore.errors import StoreUnavailable

_CRLF = b"\r\n"
_BUFFER = 1 << 20
"""Bytes asked of the socket per read: a batch of small events arrives in a few reads."""


@dataclass(frozen=True)
class WireAddress:
    """Where and as whom to open a replay's own connection."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None


def wire_address(url: ParseResult | None, server_info: dict[str, object]) -> WireAddress | None:
    """The address of the server a nats-py client is connected to, if plain TCP serves it."""
    if url is None or url.hostname is None or url.scheme not in ("nats", ""):
        return None
    if server_info.get("tls_required") or server_info.get("nonce"):
        return None  # TLS, or nkeys/JWT signatures: nats-py's job
    return WireAddress(url.hostname, url.port or 4222, url.username, url.password)


class _Reply:
    """The bodies of one batch, complete with the server's status message."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bodies: list[bytes] = []
        self.status = ""
        self.headers: dict[str, str] = {}
        self.done: asyncio.Future[None] = loop.create_future()


class _Protocol(asyncio.Protocol):
    """Cuts MSG and HMSG frames out of the stream; answers PING; fails on -ERR or EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.replies: dict[bytes, _Reply] = {}
        self.pong: asyncio.Future[None] = loop.create_future()
        self.info: asyncio.Future[dict[str, object]] = loop.create_future()
        self.error: Exception | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return  # closed by the replay itself: nobody waits for what was still asked
        self._fail(StoreUnavailable(f"the replay's NATS connection closed: {exc!r}"))

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        futures: list[asyncio.Future[Any]] = [self.pong, self.info]
        futures += [reply.done for reply in self.replies.values()]
        for future in futures:
            if not future.done():
                future.set_exception(self.error)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        try:
            self.buffer = buffer[self._parse(buffer) :]
        except (ValueError, IndexError, KeyError) as error:
            self._fail(StoreUnavailable(f"unreadable reply on the replay's connection: {error!r}"))
            assert self.transport is not None
            self.transport.close()

    def _parse(self, buffer: bytes) -> int:
        """Handle every whole frame in `buffer`; return where the unfinished one starts."""
        position, size = 0, len(buffer)
        replies = self.replies
        find = buffer.find
        while True:
            end = find(_CRLF, position)
            if end < 0:
                return position
            if buffer.startswith(b"MSG ", position):
                # MSG <subject> <sid> [reply] <bytes>
                fields = buffer[position + 4 : end].split()
                start = end + 2
                stop = start + int(fields[-1])
                if stop + 2 > size:
                    return position
                replies[fields[1]].bodies.append(buffer[start:stop])
                position = stop + 2
            elif buffer.startswith(b"HMSG ", position):
                # HMSG <subject> <sid> [reply] <header bytes> <total bytes>: a status message.
                fields = buffer[position + 5 : end].split()
                start = end + 2
                stop = start + int(fields[-1])
                if stop + 2 > size:
                    return position
                self._status(replies[fields[1]], buffer[start : start + int(fields[-2])])
                position = stop + 2
            else:
                self._control(buffer[position:end])
                position = end + 2

    @staticmethod
    def _status(reply: _Reply, header: bytes) -> None:
        lines = header.decode().split("\r\n")
        # NATS/1.0 <code> <description>, then `Name: value` lines.
        reply.status = lines[0].split()[1] if len(lines[0].split()) > 1 else ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                reply.headers[name.strip()] = value.strip()
        if not reply.done.done():
            reply.done.set_result(None)

    def _control(self, line: bytes) -> None:
        assert self.transport is not None
        if line.startswith(b"PING"):
            self.transport.write(b"PONG\r\n")
        elif line.startswith(b"PONG"):
            if not self.pong.done():
                self.pong.set_result(None)
        elif line.startswith(b"INFO "):
            if not self.info.done():
                self.info.set_result(json.loads(line[5:]))
        elif line.startswith(b"-ERR"):
            self._fail(
                StoreUnavailable(f"NATS refused the replay: {line.decode(errors='replace')}")
            )
            self.transport.close()
        # +OK and anything else: nothing to do.


async def wire_replay(
    address: WireAddress,
    *,
    stream: str,
    from_sequence: int,
    up_to_sequence: int,
    batch: int,
    max_bytes: int,
    timeout: float,
    ahead: int = 2,
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Every body from `from_sequence` to `up_to_sequence`, a batch at a time, in order.

    The same requests and checks as `direct.replay_batches` (bodies without headers; each
    batch's last sequence, which the server sends, checked against the count; `ahead` requests
    in flight, each on a subscription of its own), over a connection opened for the replay.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(loop), address.host, address.port), timeout
        )
    except (OSError, TimeoutError) as error:
        raise StoreUnavailable(f"NATS at {address.host}:{address.port}: {error!r}") from error
    try:
        await asyncio.wait_for(protocol.info, timeout)
        options: dict[str, object] = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "protocol": 1,
            "name": "sutazai-replay",
            "lang": "python",
            "version": "wire",
        }
        if address.user is not None and address.password is not None:
            options.update(user=address.user, **{"pass": address.password})
        elif address.user is not None:
            options["auth_token"] = address.user
        transport.write(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        await asyncio.wait_for(protocol.pong, timeout)

        api = f"$JS.API.DIRECT.GET.{stream}".encode()
        free = deque(f"{sid}".encode() for sid in range(1, ahead + 1))
        for sid in free:
            transport.write(b"SUB _REPLAY." + sid + b" " + sid + _CRLF)
        in_flight: deque[tuple[int, bytes]] = deque()
        next_sequence = from_sequence

        def ask(sid: bytes) -> None:
            nonlocal next_sequence
            size = min(batch, up_to_sequence - next_sequence + 1)
            request = json.dumps(
                {
                    "seq": next_sequence,
                    "next_by_subj": ">",
                    "batch": size,
                    "max_bytes": max_bytes,
                    "no_hdr": True,
                }
            ).encode()
            protocol.replies[sid] = _Reply(loop)
            transport.write(b"PUB %s _REPLAY.%s %d\r\n%s\r\n" % (api, sid, len(request), request))
            in_flight.append((next_sequence, sid))
            next_sequence += size

        while True:
            while free and next_sequence <= up_to_sequence:
                ask(free.popleft())
            if not in_flight:
                return
            sequence, sid = in_flight.popleft()
            reply = protocol.replies[sid]
            await asyncio.wait_for(reply.done, timeout)
            bodies, status, headers = reply.bodies, reply.status, reply.headers
            if status == "404" or not bodies:
                return
            last = sequence + len(bodies) - 1
            if status != "204" or int(headers.get("Nats-Last-Sequence", "-1")) != last:
                raise StoreUnavailable(
                    f"replay from {sequence} expected to end at {last}, the server said"
                    f" {status} {headers}"
                )
            free.append(sid)
            if in_flight and in_flight[0][0] != last + 1:
                # A short batch (`max_bytes`): what was asked ahead starts past a gap. Let it
                # finish and ask again from here.
                while in_flight:
                    _, ahead_sid = in_flight.popleft()
                    await asyncio.wait_for(protocol.replies[ahead_sid].done, timeout)
                    free.append(ahead_sid)
            if not in_flight:
                next_sequence = last + 1
            del protocol.replies[sid]
            yield sequence, bodies
    except TimeoutError as error:
        raise StoreUnavailable(f"NATS did not answer a replay in {timeout}s") from error
    finally:
        protocol.closing = True
        transport.close()
