"""The one settings class: environment variables prefixed `SUTAZAI_` and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every embedded server binds here and nowhere else.
LOOPBACK = "127.0.0.1"


class Settings(BaseSettings):
    """Where the platform keeps its data and how it reaches each server.

    A server whose `*_url` is set is external: it is only health-checked, never started.
    Ports are the project's own, away from the defaults another install may already use.
    """

    model_config = SettingsConfigDict(env_prefix="SUTAZAI_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".sutazai"), description="Root of embedded server data.")
    startup_timeout: float = Field(default=30.0, gt=0, description="Seconds a server may take.")
    stop_timeout: float = Field(default=10.0, gt=0, description="Seconds before stop means kill.")
    log_format: str = Field(default="console", pattern="^(console|json)$")
    log_level: str = Field(default="info")

    nats_url: str | None = None
    nats_port: int = 14222
    nats_monitor_port: int = 18222

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
    gateway_port: int = Field(default=18080, description="Where the GraphQL gateway listens.")

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
    poison_policy: str = Field(default="stop", pattern="^(stop|skip)$")

    @property
    def neo4j_auth(self) -> tuple[str, str] | None:
        """Neo4j credentials, when a password is set."""
        return (self.neo4j_user, self.neo4j_password) if self.neo4j_password else None

    @property
    def resolved_data_dir(self) -> Path:
        """The data dir as an absolute path."""
        return self.data_dir.expanduser().resolve()
