"""What every server of the stack offers, embedded (a child process) or external (a URL)."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runtime.servers.process import Probe, ServerProcess, wait_until_healthy


class Server(Protocol):
    """A server the platform depends on."""

    name: str

    @property
    def url(self) -> str:
        """How clients reach it."""
        ...

    @property
    def embedded(self) -> bool:
        """True when the platform runs it as a child process."""
        ...

    @property
    def pid(self) -> int | None:
        """The process group of an embedded server while it runs."""
        ...

    async def start(self) -> None:
        """Bring it up (embedded) or make sure it answers (external), within the deadline."""
        ...

    async def stop(self) -> None:
        """Stop it (embedded); nothing for an external server."""
        ...

    async def check(self) -> None:
        """One health probe; raises when it does not answer."""
        ...


class ExternalServer:
    """A server somebody else runs: checked, never started or stopped."""

    embedded = False
    pid = None

    def __init__(
        self, name: str, url: str, probe_for: Callable[[str], Probe], startup_timeout: float
    ) -> None:
        self.name = name
        self.url = url
        self._probe = probe_for(url)
        self._startup_timeout = startup_timeout

    async def start(self) -> None:
        """Wait (bounded) until the external server answers."""
        await wait_until_healthy(self.name, self._probe, timeout=self._startup_timeout)

    async def stop(self) -> None:
        """Leave it running: it is not ours."""

    async def check(self) -> None:
        """One health probe."""
        await self._probe()


@dataclass(frozen=True)
class ServerOptions:
    """What every embedded server shares: where data lives and how long starting may take."""

    root: Path
    startup_timeout: float
    stop_timeout: float


class EmbeddedServer(ABC):
    """A server the platform runs itself, bound to 127.0.0.1 with data under its own dir."""

    name: str
    stop_signal: signal.Signals = signal.SIGTERM
    embedded = True

    def __init__(self, options: ServerOptions, *, port: int) -> None:
        self.root = options.root
        self.port = port
        self.startup_timeout = options.startup_timeout
        self.stop_timeout = options.stop_timeout
        self.data_dir = self.root / self.name
        self.log_path = self.root / "logs" / f"{self.name}.log"
        self._process: ServerProcess | None = None

    @property
    @abstractmethod
    def url(self) -> str:
        """How clients reach it."""

    @abstractmethod
    def argv(self) -> Sequence[str]:
        """The command line that runs the server in the foreground."""

    @abstractmethod
    async def check(self) -> None:
        """One health probe; raises when it does not answer."""

    def prepare(self) -> None:
        """Make the data dir usable before the first spawn (create, initialise)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    async def after_healthy(self) -> None:  # noqa: B027 -- an optional hook, empty by default
        """Work to do once the server answers (create a database, say)."""

    @property
    def run_as(self) -> str | None:
        """The OS user to run as; None for the current one."""
        return None

    @property
    def pid(self) -> int | None:
        """The process group id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def process(self) -> ServerProcess:
        """The child process (created on first start)."""
        if self._process is None:
            self._process = ServerProcess(
                name=self.name,
                argv=self.argv(),
                log_path=self.log_path,
                pid_path=self.root / "run" / f"{self.name}.pid",
                stop_signal=self.stop_signal,
                run_as=self.run_as,
            )
        return self._process

    async def start(self) -> None:
        """Prepare the data, spawn the process and wait until it is healthy."""
        self.prepare()
        process = self.process
        process.spawn()
        try:
            await wait_until_healthy(
                self.name,
                self.check,
                timeout=self.startup_timeout,
                log_path=self.log_path,
                process=process.popen,
            )
            await self.after_healthy()
        except BaseException:
            await process.stop(self.stop_timeout)
            raise

    async def stop(self) -> None:
        """Stop with the server's own signal, then kill the group at the deadline."""
        if self._process is not None:
            await self._process.stop(self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL the process group, leaving the data as a crash would."""
        if self._process is not None:
            self._process.kill()
