"""What `sutazai doctor` checks: every server and its version, the streams and buckets against
the layout the settings expect, consumer lag, the DLQ, disk space and clocks.

Each check yields findings: a row (check, status, detail) and, for a problem, one line that says
what is wrong and what to do. Nothing here changes anything: streams are read, never created or
updated (a command that writes, `sutazai up` first, brings them up to date).

NATS is read through its JetStream API (any NATS, embedded or external); the embedded nodes'
monitoring endpoint (`/varz`) adds what the API does not tell: the server's version per node,
whether JetStream syncs every write, and each node's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import nats.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig

from eventstore.connection import server_urls
from eventstore.streams import (
    AGENTS_BUCKET,
    BLOBS_BUCKET,
    DLQ_STREAM,
    DLQ_SUBJECTS,
    EVENTS_STREAM,
    LEASES_BUCKET,
    SNAPSHOTS_BUCKET,
    UNIQUE_BUCKET,
    StreamLayout,
    dlq_stream,
    events_stream,
)
from runtime.servers import Server
from runtime.servers.nats import NatsServer
from runtime.settings import Settings
from runtime.stack import ServerStatus, Stack

OK = "ok"
PROBLEM = "problem"
SKIPPED = "skipped"


@dataclass(frozen=True)
class DoctorPolicy:
    """What counts as a problem."""

    consumer_lag: int = 1_000
    """Events a durable consumer may have yet to be delivered (as the system monitor alerts)."""
    min_free_bytes: int = 1 << 30
    min_free_ratio: float = 0.05
    clock_skew: float = 1.0
    """Seconds a NATS node's clock may differ from this machine's, or from another node's."""
    timeout: float = 3.0
    min_nats: tuple[int, int] = (2, 12)
    """Atomic batch publish (every command's events at once) came with nats-server 2.12."""


@dataclass(frozen=True)
class Finding:
    """One row of the report and, when it failed, a line per problem: what is wrong — what to
    do."""

    check: str
    status: str
    detail: str
    problems: tuple[str, ...] = ()


@dataclass
class Diagnosis:
    """Every finding, and how many servers answered at all."""

    findings: list[Finding] = field(default_factory=list)
    answering: int = 0

    @property
    def problems(self) -> list[str]:
        return [problem for finding in self.findings for problem in finding.problems]


# Limits a stream of ours must not have: the log refuses new events at a limit (discard new),
# and the DLQ would silently drop parked ones (discard old).
_NO_LIMITS: dict[str, int] = {
    "max_msgs": -1,
    "max_bytes": -1,
    "max_age": 0,
    "max_msgs_per_subject": -1,
    "max_msg_size": -1,
}
_IMMUTABLE = ("storage", "retention")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _where(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]


def _log_of(server: Server) -> str:
    log_path = getattr(server, "log_path", None)
    if not isinstance(log_path, Path):
        return "its log"
    with contextlib.suppress(ValueError):  # shorter, when under the working directory
        return str(log_path.relative_to(Path.cwd()))
    return str(log_path)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"


_URL_SETTING = {
    "nats": "SUTAZAI_NATS_URL",
    "postgres": "SUTAZAI_POSTGRES_URL",
    "redis": "SUTAZAI_REDIS_URL",
    "graph": "SUTAZAI_GRAPH_URL",
    "model": "OLLAMA_HOST",
}


def _kind(server: Server) -> str:
    return server.name.split("-")[0]


# --- servers and versions ------------------------------------------------------------------


async def _nats_version(server: Server, varz: dict[str, Any] | None) -> str:
    if varz is not None and "version" in varz:
        return f"nats-server {varz['version']}"
    client = await nats.connect(server_urls(server.url), **_NATS_OPTIONS)
    try:
        return f"nats-server {client.connected_server_version}"
    finally:
        await client.close()


async def _postgres_version(server: Server) -> str:
    connection = await asyncpg.connect(server.url, timeout=2)
    try:
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return f"PostgreSQL {str(version).split()[0]}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _redis_version(server: Server) -> str:
    client = aioredis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=2)
    try:
        info = await client.info("server")
        modules = (
            await client.execute_command("MODULE", "LIST")  # type: ignore[no-untyped-call]
            if _kind(server) == "graph"
            else []
        )
    finally:
        await client.aclose()
    text = f"Redis {info.get('redis_version', '?')}"
    for module in modules or []:
        if not isinstance(module, dict):  # a flat [name, value, …] reply
            module = dict(zip(module[::2], module[1::2], strict=False))
        fields = {_text(key): value for key, value in module.items()}
        if _text(fields.get("name")) == "graph":
            number = int(fields.get("ver") or 0)
            text = f"FalkorDB {number // 10000}.{number // 100 % 100}.{number % 100}, {text}"
    return text


async def _model_version(server: Server) -> str:
    async with httpx.AsyncClient(timeout=2) as client:
        response = await client.get(f"{server.url}/api/version")
        response.raise_for_status()
        return f"Ollama API {response.json().get('version', '?')}"


async def _varz(node: NatsServer) -> tuple[dict[str, Any], float]:
    """A node's `/varz`, and this machine's clock halfway through the request."""
    async with httpx.AsyncClient(timeout=2) as client:
        sent = time.time()
        response = await client.get(f"{node.monitor_url}/varz")
        midpoint = (sent + time.time()) / 2
        response.raise_for_status()
        varz: dict[str, Any] = response.json()
    return varz, midpoint


def _version_tuple(text: str) -> tuple[int, ...]:
    digits = text.split()[-1].lstrip("v").split("-")[0].split(".")
    return tuple(int(part) for part in digits if part.isdigit())


async def _servers(
    settings: Settings,
    stack: Stack,
    statuses: list[ServerStatus],
    varzs: dict[str, dict[str, Any]],
    policy: DoctorPolicy,
) -> list[Finding]:
    versions: dict[str, Callable[[Server], Awaitable[str]]] = {
        "postgres": _postgres_version,
        "redis": _redis_version,
        "graph": _redis_version,
        "model": _model_version,
    }

    async def one(server: Server, status: ServerStatus) -> Finding:
        where = _where(server.url)
        kind = _kind(server)
        if kind == "graph" and settings.neo4j_url:
            return Finding(server.name, SKIPPED, "not used: the graph is Neo4j")
        if not status.healthy:
            todo = (
                f"see why in {_log_of(server)} and restart `sutazai up`"
                if server.embedded
                else f"check {_URL_SETTING.get(kind, 'its URL setting')} and the server"
            )
            return Finding(
                server.name,
                PROBLEM,
                f"down at {where}",
                (f"{server.name} does not answer at {where} — {todo}.",),
            )
        try:
            if kind == "nats":
                version = await asyncio.wait_for(
                    _nats_version(server, varzs.get(server.name)), policy.timeout
                )
            else:
                version = await asyncio.wait_for(versions[kind](server), policy.timeout)
        except Exception as error:
            return Finding(server.name, OK, f"{where}, version unknown ({type(error).__name__})")
        problems: tuple[str, ...] = ()
        status_text = OK
        if kind == "nats" and _version_tuple(version)[:2] < policy.min_nats:
            wanted = ".".join(map(str, policy.min_nats))
            status_text = PROBLEM
            problems = (
                f"{server.name} runs {version}, older than {wanted}, which atomic batches need"
                f" — upgrade nats-server to {wanted} or newer.",
            )
        return Finding(server.name, status_text, f"{version}, {where}", problems)

    by_name = {status.name: status for status in statuses}
    return list(await asyncio.gather(*(one(s, by_name[s.name]) for s in stack)))


# --- NATS: sync and clocks -----------------------------------------------------------------


def _sync(settings: Settings, stack: Stack, varzs: dict[str, dict[str, Any]]) -> Finding:
    nodes = stack.nats_nodes()
    if not nodes:
        return Finding(
            "nats sync",
            SKIPPED,
            "external NATS: its config should say jetstream { sync_interval: always }",
        )
    wanted_always = settings.nats_sync == "always"
    problems: list[str] = []
    seen: list[str] = []
    for node in nodes:
        varz = varzs.get(node.name)
        if varz is None:
            continue
        if "error" in varz:
            problems.append(
                f"{node.name}'s monitoring endpoint does not answer ({varz['error']})"
                " — see its log and restart `sutazai up`."
            )
            continue
        config = (varz.get("jetstream") or {}).get("config") or {}
        always = bool(config.get("sync_always"))
        interval = int(config.get("sync_interval") or 0) / 1e9
        seen.append("always" if always else f"every {interval:g} s")
        if always != wanted_always:
            said = "always" if wanted_always else f"every {settings.nats_sync}"
            problems.append(
                f"{node.name} syncs JetStream {seen[-1]}, SUTAZAI_NATS_SYNC says {said}"
                " — restart `sutazai up` so that it writes the node's config again."
            )
    if not seen:
        status = PROBLEM if problems else SKIPPED
        return Finding("nats sync", status, "no NATS node answers", tuple(problems))
    detail = ", ".join(sorted(set(seen)))
    if not wanted_always and not problems:
        detail += " (an OS crash can lose writes since the last sync)"
    return Finding("nats sync", PROBLEM if problems else OK, detail, tuple(problems))


def _clocks(offsets: dict[str, float], policy: DoctorPolicy) -> Finding:
    """Each NATS node's clock against this machine's (seconds ahead), and against each other."""
    if not offsets:
        return Finding("clocks", SKIPPED, "no NATS node answers")
    problems: list[str] = []
    for name, offset in sorted(offsets.items()):
        if abs(offset) > policy.clock_skew:
            way = "ahead of" if offset > 0 else "behind"
            problems.append(
                f"{name}'s clock is {abs(offset):.1f} s {way} this machine's — sync both"
                " with NTP (chrony or systemd-timesyncd)."
            )
    spread = max(offsets.values()) - min(offsets.values())
    if len(offsets) > 1 and spread > policy.clock_skew:
        problems.append(
            f"the NATS nodes' clocks differ by {spread:.1f} s — sync every node with NTP."
        )
    worst = max(offsets.values(), key=abs)
    detail = (
        f"{len(offsets)} NATS node(s) within {abs(worst):.3f} s of this machine"
        if len(offsets) > 1
        else f"NATS {worst:+.3f} s from this machine"
    )
    return Finding("clocks", PROBLEM if problems else OK, detail, tuple(problems))


# --- NATS: streams, buckets, consumers, DLQ ------------------------------------------------

_NATS_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2,
    "allow_reconnect": False,
    "max_reconnect_attempts": 0,
}


class JetStreamApiError(Exception):
    """The JetStream API answered with an error other than "not found"."""


class _JetStreamApi:
    """Raw JetStream API requests: the replies carry the server's clock (`ts`) too."""

    def __init__(self, client: NatsClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    async def request(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        sent = time.time()
        reply = await self.client.request(f"$JS.API.{subject}", payload, timeout=self.timeout)
        answer: dict[str, Any] = json.loads(reply.data)
        answer["_midpoint"] = (sent + time.time()) / 2
        return answer

    async def stream(self, name: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A stream's info; None when there is no such stream."""
        answer = await self.request(f"STREAM.INFO.{name}", body)
        error = answer.get("error")
        if error:
            if error.get("code") == 404:
                return None
            raise JetStreamApiError(f"stream info of {name}: {error.get('description')}")
        return answer


def _offset(stamp: object, midpoint: float) -> float | None:
    """Seconds a server's RFC 3339 time (`now` of /varz, `ts` of the API) is ahead of this
    machine's clock at `midpoint`; None when there is no such time."""
    if not isinstance(stamp, str):
        return None
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if found is None:
        return None
    whole, fraction, zone = found.groups()
    zone = "+00:00" if zone == "Z" else zone
    when = datetime.fromisoformat(f"{whole}{zone}").timestamp()
    return when + float(f"0.{fraction or 0}") - midpoint


def _config_drift(wanted: StreamConfig, actual: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, actual, wanted) for every field the stream has otherwise than expected."""
    expected = {key: _plain(value) for key, value in wanted.as_dict().items() if key != "name"}
    expected.update(_NO_LIMITS)
    drift = []
    for key, value in expected.items():
        default: Any = False if isinstance(value, bool) else None
        if key in _NO_LIMITS:
            default = value
        found = actual.get(key, default)
        if found != value:
            drift.append((key, found, value))
    return drift


def _shown(key: str, value: Any) -> str:
    if key in ("duplicate_window", "max_age") and isinstance(value, int):
        return f"{value / 1e9:g} s"
    return json.dumps(value) if not isinstance(value, str) else value


class _Replicas:
    """The replicas of every stream and bucket, gathered, then said once per NATS node."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        """A node's server name (`sutazai-2`) -> its name in the stack (`nats-2`)."""
        self.leaderless: list[str] = []
        self.offline: dict[str, list[str]] = {}
        self.behind: dict[str, list[str]] = {}
        self.assets = 0

    def add(self, asset: str, info: dict[str, Any], replicas: int) -> None:
        self.assets += 1
        cluster = info.get("cluster") or {}
        if replicas > 1 and not cluster.get("leader"):
            self.leaderless.append(asset)
            return
        for peer in cluster.get("replicas") or []:
            node = str(peer.get("name"))
            node = f"{self.names[node]} ({node})" if node in self.names else node
            if peer.get("offline"):
                self.offline.setdefault(node, []).append(asset)
            elif not peer.get("current"):
                self.behind.setdefault(node, []).append(asset)

    def finding(self, replicas: int) -> Finding:
        def which(assets: list[str]) -> str:
            return ", ".join(assets) if len(assets) <= 2 else f"{len(assets)} streams and buckets"

        problems = []
        if self.leaderless:
            problems.append(
                f"{which(self.leaderless)} without a leader — a majority of the {replicas} NATS"
                " nodes must run; start the ones `sutazai status` says are down."
            )
        for node, assets in sorted(self.offline.items()):
            problems.append(
                f"the replicas on {node} of {which(assets)} are offline — start that NATS node"
                " (see its log) and restart `sutazai up`."
            )
        for node, assets in sorted(self.behind.items()):
            problems.append(
                f"the replicas on {node} of {which(assets)} are behind — if that node is down,"
                " start it; if it runs, wait for them to catch up, then see its log."
            )
        if problems:
            return Finding("replicas", PROBLEM, f"R{replicas}, not all current", tuple(problems))
        detail = f"R{replicas}, every copy current" if replicas > 1 else "R1: one copy each"
        return Finding("replicas", OK, detail)


async def _stream(
    api: _JetStreamApi, wanted: StreamConfig, offsets: list[float], copies: _Replicas
) -> Finding:
    assert wanted.name is not None
    name = wanted.name
    info = await api.stream(name)
    if info is None:
        return Finding(
            name,
            PROBLEM,
            "missing",
            (f"stream {name} does not exist — start the platform (`sutazai up`) to create it.",),
        )
    if (offset := _offset(info.get("ts"), info["_midpoint"])) is not None:
        offsets.append(offset)
    config = info.get("config") or {}
    problems = []
    for key, found, value in _config_drift(wanted, config):
        if key in _IMMUTABLE:
            todo = "the server cannot change it in place; migrate the data to a new stream"
        elif key in _NO_LIMITS:
            todo = f"remove that limit (nats CLI: `nats stream edit {name}`)"
        elif key == "num_replicas":
            todo = "restart `sutazai up` (SUTAZAI_NATS_REPLICAS) to update it in place"
        else:
            todo = "restart `sutazai up` to update it in place"
        problems.append(
            f"{name} has {key} {_shown(key, found)}, expected {_shown(key, value)} — {todo}."
        )
    replicas = int(config.get("num_replicas") or 1)
    copies.add(name, info, replicas)
    state = info.get("state") or {}
    detail = f"R{replicas}, {config.get('storage', '?')}, {state.get('messages', 0)} message(s)"
    return Finding(name, PROBLEM if problems else OK, detail, tuple(problems))


def _buckets(layout: StreamLayout) -> dict[str, float]:
    """The stream behind every bucket, and the TTL (max age, seconds) it should have."""
    return {
        f"KV_{SNAPSHOTS_BUCKET}": 0.0,
        f"KV_{UNIQUE_BUCKET}": 0.0,
        f"KV_{AGENTS_BUCKET}": layout.heartbeat_ttl,
        f"KV_{LEASES_BUCKET}": layout.lease_ttl,
        f"OBJ_{BLOBS_BUCKET}": 0.0,
    }


async def _check_buckets(api: _JetStreamApi, layout: StreamLayout, copies: _Replicas) -> Finding:
    expected = _buckets(layout)
    problems: list[str] = []
    found = 0
    for stream, ttl in expected.items():
        bucket = stream.split("_", 1)[1]
        info = await api.stream(stream)
        if info is None:
            problems.append(
                f"bucket {bucket} does not exist — start the platform (`sutazai up`) to create it."
            )
            continue
        found += 1
        config = info.get("config") or {}
        replicas = int(config.get("num_replicas") or 1)
        if replicas != layout.replicas:
            problems.append(
                f"bucket {bucket} has {replicas} replica(s), expected {layout.replicas}"
                " — recreate it at that size (nats CLI) or set SUTAZAI_NATS_REPLICAS."
            )
        if config.get("storage") != "file":
            problems.append(
                f"bucket {bucket} is stored in {config.get('storage')}, not on file"
                " — it loses its data on restart; recreate it with file storage."
            )
        age = int(config.get("max_age") or 0) / 1e9
        if abs(age - ttl) > 0.001:
            problems.append(
                f"bucket {bucket} has a TTL of {age:g} s, expected {ttl:g} s"
                " — restart `sutazai up` to update it."
            )
        copies.add(bucket, info, replicas)
    detail = f"{found} of {len(expected)}, R{layout.replicas}"
    return Finding("buckets", PROBLEM if problems else OK, detail, tuple(problems))


async def _consumers(client: NatsClient, policy: DoctorPolicy) -> Finding:
    js = client.jetstream(timeout=policy.timeout)
    durable = [info for info in await js.consumers_info(EVENTS_STREAM) if info.config.durable_name]
    problems = []
    worst = 0
    for info in durable:
        pending = int(info.num_pending or 0)
        worst = max(worst, pending)
        if pending > policy.consumer_lag:
            problems.append(
                f"consumer {info.config.durable_name} is {pending} events behind the log"
                f" (more than {policy.consumer_lag}) — check that its agent runs"
                " (`sutazai agents list`) and its log for errors."
            )
    detail = f"{len(durable)} durable, at most {worst} events behind" if durable else "none yet"
    return Finding("consumers", PROBLEM if problems else OK, detail, tuple(problems))


async def _dlq(api: _JetStreamApi) -> Finding:
    info = await api.stream(DLQ_STREAM, {"subjects_filter": DLQ_SUBJECTS})
    if info is None:
        return Finding("DLQ", SKIPPED, f"no {DLQ_STREAM} stream")
    state = info.get("state") or {}
    parked = int(state.get("messages") or 0)
    if not parked:
        return Finding("DLQ", OK, "empty")
    by_consumer = {
        subject.rsplit(".", 1)[-1]: count
        for subject, count in (state.get("subjects") or {}).items()
    }
    who = ", ".join(f"{name} {count}" for name, count in sorted(by_consumer.items()))
    return Finding(
        "DLQ",
        PROBLEM,
        f"{parked} parked ({who})",
        (
            f"{parked} event(s) parked on the DLQ ({who}) — read why with `sutazai dlq list`,"
            " fix the cause, then `sutazai dlq replay`.",
        ),
    )


async def _jetstream(
    urls: list[str],
    layout: StreamLayout,
    policy: DoctorPolicy,
    offsets: list[float],
    names: dict[str, str],
) -> list[Finding]:
    client = await nats.connect(urls, **_NATS_OPTIONS)
    try:
        api = _JetStreamApi(client, policy.timeout)
        copies = _Replicas(names)
        findings = [
            await _stream(api, events_stream(layout), offsets, copies),
            await _stream(api, dlq_stream(layout), [], copies),
            await _check_buckets(api, layout, copies),
            copies.finding(layout.replicas),
        ]
        if findings[0].detail != "missing":
            findings.append(await _consumers(client, policy))
        findings.append(await _dlq(api))
        return findings
    finally:
        await client.close()


def _not_checked(reason: str) -> list[Finding]:
    return [
        Finding(check, SKIPPED, reason)
        for check in (EVENTS_STREAM, DLQ_STREAM, "buckets", "replicas", "consumers", "DLQ")
    ]


# --- disk ----------------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk(settings: Settings, policy: DoctorPolicy) -> Finding:
    places = [settings.resolved_data_dir]
    if settings.postgres_data_dir is not None:
        places.append(settings.postgres_data_dir.expanduser().resolve())
    seen: set[int] = set()
    details: list[str] = []
    problems: list[str] = []
    for place in places:
        where = _existing(place)
        device = where.stat().st_dev
        if device in seen:
            continue
        seen.add(device)
        usage = shutil.disk_usage(where)
        ratio = usage.free / usage.total if usage.total else 0.0
        details.append(f"{_size(usage.free)} free ({ratio:.0%}) under {place}")
        if usage.free < policy.min_free_bytes or ratio < policy.min_free_ratio:
            problems.append(
                f"only {_size(usage.free)} ({ratio:.0%}) free on the disk of {place} — free"
                " space or move SUTAZAI_DATA_DIR: JetStream and PostgreSQL stop writing when"
                " it is full."
            )
    return Finding("disk", PROBLEM if problems else OK, "; ".join(details), tuple(problems))


# --- all of it -----------------------------------------------------------------------------


async def diagnose(
    settings: Settings, layout: StreamLayout, policy: DoctorPolicy | None = None
) -> Diagnosis:
    """Run every check against the platform the settings point at."""
    policy = policy or DoctorPolicy()
    stack = Stack(settings)
    statuses = await stack.status()
    healthy = {status.name for status in statuses if status.healthy}
    diagnosis = Diagnosis(answering=len(healthy))

    varzs: dict[str, dict[str, Any]] = {}
    offsets: dict[str, float] = {}
    for node in stack.nats_nodes():
        if node.name not in healthy:
            continue
        try:
            varz, midpoint = await asyncio.wait_for(_varz(node), policy.timeout)
        except Exception as error:
            varzs[node.name] = {"error": f"{node.monitor_url}/varz: {type(error).__name__}"}
            continue
        varzs[node.name] = varz
        offset = _offset(varz.get("now"), midpoint)
        if offset is not None:
            offsets[node.name] = offset

    diagnosis.findings += await _servers(settings, stack, statuses, varzs, policy)
    diagnosis.findings.append(_sync(settings, stack, varzs))

    nats_urls = [s.url for s in statuses if s.healthy and s.name.split("-")[0] == "nats"]
    if nats_urls:
        api_offsets: list[float] = []
        try:
            diagnosis.findings += await _jetstream(
                [u for url in nats_urls for u in server_urls(url)],
                layout,
                policy,
                api_offsets,
                {node.server_name: node.name for node in stack.nats_nodes()},
            )
        except (OSError, nats.errors.Error, JetStreamApiError) as error:
            reason = f"JetStream did not answer ({type(error).__name__}: {error})"
            todo = "a cluster needs a majority of its nodes up; see `sutazai status`"
            diagnosis.findings.append(
                Finding("jetstream", PROBLEM, reason, (f"{reason} — {todo}.",))
            )
        if not offsets and api_offsets:  # an external NATS: its clock from the API's replies
            offsets["nats"] = api_offsets[0]
    else:
        diagnosis.findings += _not_checked("NATS does not answer")
    diagnosis.findings.append(_clocks(offsets, policy))
    diagnosis.findings.append(_disk(settings, policy))
    return diagnosis
