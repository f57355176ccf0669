"""What a command needs before the domain sees it: passwords hashed, content stored, sizes checked.

The wire carries what people type (a password, a document's text); the domain receives what may
be stored (an argon2 hash; a content hash with the text inline only when small).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher

from domain.errors import InvalidField, PayloadTooLarge
from eventstore.blobs import BlobStore, content_hash


@dataclass(frozen=True)
class Limits:
    """Size limits on what commands carry."""

    max_payload_bytes: int = 64 * 1024
    max_document_bytes: int = 10 * 1024 * 1024
    inline_document_bytes: int = 32 * 1024
    min_password_length: int = 8


Prepare = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandPreparation:
    """Turns a wire payload into the domain command's fields, by command name."""

    def __init__(self, blobs: BlobStore, limits: Limits, hasher: PasswordHasher) -> None:
        self._blobs = blobs
        self._limits = limits
        self._hasher = hasher
        self._steps: dict[str, Prepare] = {
            "RegisterUser": self._register_user,
            "AddDocument": self._add_document,
            "SubmitTask": self._bounded("payload"),
            "CompleteTask": self._bounded("result"),
            "SendAgentMessage": self._bounded("payload"),
        }

    async def prepare(self, command_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload the domain command is built from."""
        step = self._steps.get(command_name)
        return await step(dict(payload)) if step else payload

    def _bounded(self, field: str) -> Prepare:
        async def check(payload: dict[str, Any]) -> dict[str, Any]:
            self._check_json_size(payload, field)
            return payload

        return check

    def _check_json_size(self, payload: dict[str, Any], field: str) -> None:
        """PayloadTooLarge when the field, as JSON, is over the payload limit."""
        size = len(json.dumps(payload.get(field, {})).encode())
        if size > self._limits.max_payload_bytes:
            raise PayloadTooLarge(f"payload.{field}", size, self._limits.max_payload_bytes)

    async def _register_user(self, payload: dict[str, Any]) -> dict[str, Any]:
        payload.pop("password_hash", None)  # only ever computed here
        password = payload.pop("password", None)
        if not isinstance(password, str):
            raise InvalidField("payload.password", "a password is required")
        if not self._limits.min_password_length <= len(password) <= 1024:
            raise InvalidField(
                "payload.password",
                f"must be {self._limits.min_password_length} to 1024 characters",
            )
        # argon2 is deliberately slow: keep it off the event loop.
        payload["password_hash"] = await asyncio.to_thread(self._hasher.hash, password)
        return payload

    async def _add_document(self, payload: dict[str, Any]) -> dict[str, Any]:
        content = payload.pop("content", None)
        if not isinstance(content, str):
            raise InvalidField("payload.content", "the document's text is required")
        body = content.encode()
        if len(body) > self._limits.max_document_bytes:
            raise PayloadTooLarge("payload.content", len(body), self._limits.max_document_bytes)
        payload["content_size"] = len(body)
        if len(body) <= self._limits.inline_document_bytes:
            payload["content_hash"] = content_hash(body)
            payload["content"] = content
        else:
            payload["content_hash"] = await self._blobs.put(body)
            payload["content"] = None
        self._check_json_size(payload, "metadata")
        return payload
