"""`python -m runtime.model_server --port P`: load the models, then serve the Ollama API."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import structlog
import uvicorn

from runtime.model_server.api import build_app
from runtime.model_server.engine import CHAT_MODEL, Models
from runtime.settings import LOOPBACK
from runtime.structured_logging import configure_logging


def main() -> None:
    """Take the port, load both models, serve until SIGTERM."""
    parser = argparse.ArgumentParser(description="SutazAI's embedded Ollama-compatible server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--chat-model", default=CHAT_MODEL, help="the chat model's served name")
    parser.add_argument(
        "--model-path", type=Path, default=None, help="a GGUF chat model (default: SmolLM2)"
    )
    arguments = parser.parse_args()
    # The port first: a port in use fails at once, not after the models have loaded.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, arguments.port))
    listener.listen(128)
    # The models ship inside Python packages: never reach for a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    configure_logging(fmt=os.environ.get("SUTAZAI_LOG_FORMAT", "console"))
    models = Models(
        chat_model=arguments.chat_model,
        chat_model_path=arguments.model_path,
        threads=arguments.threads,
    )
    structlog.get_logger(__name__).info(
        "model_server.loaded",
        seconds=round(models.load_seconds, 1),
        port=arguments.port,
        chat_model=models.chat_model,
        path=str(models.chat_model_path),
    )
    # A generation in flight gets two seconds at a stop; whoever stops us kills us after that.
    server = uvicorn.Server(
        uvicorn.Config(build_app(models), log_level="warning", timeout_graceful_shutdown=2)
    )
    server.run(sockets=[listener])


if __name__ == "__main__":
    main()
