"""PostgreSQL from Debian's packages, run as the `postgres` user when we are root."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import structlog

from runtime.servers.base import EmbeddedServer, ServerOptions
from runtime.servers.errors import ServerSetupError
from runtime.servers.process import Probe
from runtime.settings import LOOPBACK

log = structlog.get_logger(__name__)

_OS_USER = "postgres"


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres")
    if found is None:
        raise ServerSetupError("postgres", "PostgreSQL not found: install Debian's `postgresql`")
    return Path(found).parent


def postgres_probe(dsn: str) -> Probe:
    """A probe that opens a connection (CannotConnectNowError while it starts means: not yet)."""

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=1)
        await connection.close()

    return probe


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _user_can_enter(directory: Path) -> bool:
    """Whether the `postgres` user can reach `directory` (every parent must be enterable)."""
    result = subprocess.run(
        ["sh", "-c", 'cd -- "$1"', "sh", str(directory)],
        user=_OS_USER,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


class PostgresServer(EmbeddedServer):
    """PostgreSQL on loopback, its Unix socket inside its (mode 700) data dir."""

    name = "postgres"
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
    stop_signal = signal.SIGINT

    def __init__(
        self, options: ServerOptions, *, port: int, database: str, data_dir: Path | None = None
    ) -> None:
        super().__init__(options, port=port)
        self.database = database
        if data_dir is not None:
            self.data_dir = data_dir.expanduser().resolve()
        self._placed = False

    @property
    def url(self) -> str:
        """The application database's DSN."""
        return f"postgresql://{_OS_USER}@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        """The maintenance database's DSN, which exists from initdb on."""
        return f"postgresql://{_OS_USER}@{LOOPBACK}:{self.port}/postgres"

    @property
    def run_as(self) -> str | None:
        """PostgreSQL refuses to run as root: run it as `postgres` then."""
        return _OS_USER if _running_as_root() else None

    def _place_data_dir(self) -> None:
        """Move the data dir somewhere the `postgres` user can reach, when root's cannot be.

        A clone under a mode-700 home cannot hold a cluster run by another user; rather than hang
        or fail obscurely, use a stable dir under /var/tmp keyed by the intended path, and say so.
        """
        if self._placed or not _running_as_root():
            self._placed = True
            return
        self._placed = True
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if _user_can_enter(self.data_dir.parent):
            return
        key = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        # /var/tmp survives reboots, unlike /tmp, and every user can enter it.
        placed = Path("/var/tmp") / f"sutazai-postgres-{key}" / "data"  # noqa: S108
        log.warning(
            "postgres.data_dir_moved",
            wanted=str(self.data_dir),
            used=str(placed),
            why="the postgres user cannot enter a parent of the wanted dir",
        )
        placed.parent.mkdir(parents=True, exist_ok=True)
        # Only enterable by others, which is what the postgres user needs to reach its data.
        os.chmod(placed.parent, 0o711)  # noqa: S103
        if not _user_can_enter(placed.parent):
            raise ServerSetupError(
                "postgres",
                f"the postgres user cannot enter {self.data_dir.parent} nor {placed.parent}; "
                "set SUTAZAI_POSTGRES_DATA_DIR to a directory it can reach",
            )
        self.data_dir = placed

    def prepare(self) -> None:
        """Create the data dir (owned by `postgres`, mode 700) and initdb it once."""
        self._place_data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            shutil.chown(self.data_dir, user=_OS_USER, group=_OS_USER)
        os.chmod(self.data_dir, 0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = [
            str(postgres_bin_dir() / "initdb"),
            "-D", str(self.data_dir),
            "-U", _OS_USER,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C.UTF-8",
        ]  # fmt: skip
        result = subprocess.run(initdb, user=self.run_as, capture_output=True, check=False)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            log_file.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise ServerSetupError(
                "postgres",
                f"initdb of {self.data_dir} failed (exit {result.returncode}); "
                f"see {self.log_path}: {result.stderr.decode(errors='replace').strip()[-500:]}",
            )

    def argv(self) -> Sequence[str]:
        """postgres on loopback only, its socket in the data dir."""
        self._place_data_dir()
        return [
            str(postgres_bin_dir() / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={LOOPBACK}",
            "-k", str(self.data_dir),
        ]  # fmt: skip

    async def check(self) -> None:
        """Connect to the maintenance database."""
        await postgres_probe(self.admin_url)()

    async def after_healthy(self) -> None:
        """Create the application database on first start."""
        connection = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                # Identifiers cannot be bound as parameters; quote it as PostgreSQL would.
                quoted = '"' + self.database.replace('"', '""') + '"'
                await connection.execute(f"CREATE DATABASE {quoted}")
                log.info("postgres.database_created", database=self.database)
        finally:
            await connection.close()
