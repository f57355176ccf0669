"""The servers the platform runs: embedded child processes on loopback, or external URLs."""

from runtime.servers.base import EmbeddedServer, ExternalServer, Server
from runtime.servers.errors import ServerError, ServerSetupError, ServerStartError

__all__ = [
    "EmbeddedServer",
    "ExternalServer",
    "Server",
    "ServerError",
    "ServerSetupError",
    "ServerStartError",
]
