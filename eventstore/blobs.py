"""Large bodies (document content, big results) in the `sutazai_blobs` Object Store, by hash."""

from __future__ import annotations

import hashlib

import nats.errors
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from eventstore.errors import StoreUnavailable
from eventstore.store import EventStore
from eventstore.streams import BLOBS_BUCKET


def content_hash(content: bytes) -> str:
    """The SHA-256 a blob is stored under."""
    return hashlib.sha256(content).hexdigest()


class BlobNotFound(LookupError):
    """No blob has that hash."""


class BlobStore:
    """Content-addressed: the same bytes are stored once, under their hash."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def _objects(self) -> ObjectStore:
        return await self._store.object_store(BLOBS_BUCKET)

    async def put(self, content: bytes) -> str:
        """Store `content` (if not there yet) and return its hash."""
        digest = content_hash(content)
        objects = await self._objects()
        try:
            with self._store.watch.bounded("a blob write"):
                try:
                    await objects.get_info(digest)
                except NotFoundError:
                    await objects.put(digest, content)
        except nats.errors.Error as error:
            raise StoreUnavailable(f"blob write failed: {error!r}") from error
        return digest

    async def get(self, digest: str) -> bytes:
        """The blob stored under `digest`."""
        objects = await self._objects()
        try:
            with self._store.watch.bounded("a blob read"):
                result = await objects.get(digest)
        except NotFoundError:
            raise BlobNotFound(digest) from None
        except nats.errors.Error as error:
            raise StoreUnavailable(f"blob read failed: {error!r}") from error
        return bytes(result.data or b"")
