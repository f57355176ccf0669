"""Who is asking: short-lived access JWTs (PyJWT) and rotating refresh tokens kept in Redis.

An access token is checked without any round trip (signature and expiry). A refresh token is
an opaque random string; Redis holds only its SHA-256. Each use spends it and issues the next
one of the same family; presenting a spent token again means it was stolen, so the whole
family is revoked. Logging out revokes the family too.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import jwt
import redis.asyncio as aioredis

from gateway.errors import unauthenticated
from schemas.envelope import Actor

Role = Literal["admin", "user", "agent", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "user", "agent", "auditor")
_ALGORITHM = "HS256"
_ISSUER = "sutazai"
_VERIFIED_KEPT = 10_000


@dataclass(frozen=True)
class Principal:
    """A signed-in user as the access token names them."""

    user_id: UUID
    username: str
    role: Role

    @property
    def actor(self) -> Actor:
        """The actor the events of this user's commands record."""
        return Actor(id=str(self.user_id), kind="agent" if self.role == "agent" else "user")

    @property
    def reads_everything(self) -> bool:
        """Admins and auditors see every user's tasks, documents and conversations."""
        return self.role in ("admin", "auditor")


@dataclass(frozen=True)
class TokenPair:
    """What signing in or refreshing hands out."""

    access_token: str
    refresh_token: str
    expires_in: int


class Tokens:
    """Issues and checks access tokens; issues, rotates and revokes refresh tokens."""

    def __init__(
        self, redis: aioredis.Redis, secret: str, *, access_seconds: int, refresh_seconds: int
    ) -> None:
        self._redis = redis
        self._secret = secret
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        # Tokens checked lately and when they expire: a client sends the same one many times.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def access_token(self, principal: Principal) -> str:
        """A signed token naming the principal, valid `access_seconds`."""
        now = int(time.time())
        claims = {
            "iss": _ISSUER,
            "sub": str(principal.user_id),
            "name": principal.username,
            "role": principal.role,
            "iat": now,
            "exp": now + self.access_seconds,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The principal of a valid access token; UNAUTHENTICATED otherwise."""
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Principal, float]:
        """The principal of a valid access token and when it expires (Unix seconds)."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known
        principal, expires = self._decode(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > _VERIFIED_KEPT:
            self._verified.popitem(last=False)
        return principal, expires

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the access token has expired; refresh it") from None
        except jwt.InvalidTokenError:
            raise unauthenticated("the access token is not valid") from None
        role = claims.get("role")
        if role not in ROLES:
            raise unauthenticated("the access token is not valid")
        principal = Principal(
            user_id=UUID(claims["sub"]), username=claims.get("name", ""), role=role
        )
        return principal, float(claims["exp"])

    async def issue(self, principal: Principal, family: str | None = None) -> TokenPair:
        """An access token and a refresh token (a new family unless one is given)."""
        family = family or secrets.token_hex(16)
        refresh = secrets.token_urlsafe(32)
        digest = _digest(refresh)
        record = json.dumps({"user_id": str(principal.user_id), "family": family})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_live_key(digest), record, ex=self.refresh_seconds)
            pipe.sadd(_family_key(family), digest)
            pipe.expire(_family_key(family), self.refresh_seconds)
            await pipe.execute()
        return TokenPair(self.access_token(principal), refresh, self.access_seconds)

    async def spend(self, refresh_token: str) -> tuple[UUID, str]:
        """Use a refresh token up: its user and family. A reused one revokes its family."""
        digest = _digest(refresh_token)
        raw = await self._redis.getdel(_live_key(digest))
        if raw is None:
            family = await self._redis.get(_spent_key(digest))
            if family is not None:
                await self._revoke_family(family.decode() if isinstance(family, bytes) else family)
                raise unauthenticated("this refresh token was already used; sign in again")
            raise unauthenticated("the refresh token is not valid; sign in again")
        record = json.loads(raw)
        await self._redis.set(_spent_key(digest), record["family"], ex=self.refresh_seconds)
        return UUID(record["user_id"]), str(record["family"])

    async def revoke(self, refresh_token: str, user_id: UUID) -> bool:
        """Sign out: the token's whole family stops working.

        False if it is not a valid token of this user (nobody signs out someone else).
        """
        raw = await self._redis.get(_live_key(_digest(refresh_token)))
        if raw is None:
            return False
        record = json.loads(raw)
        if record["user_id"] != str(user_id):
            return False
        await self._revoke_family(record["family"])
        return True

    async def _revoke_family(self, family: str) -> None:
        digests = await self._redis.smembers(_family_key(family))
        keys = [_live_key(d.decode() if isinstance(d, bytes) else d) for d in digests]
        await self._redis.delete(_family_key(family), *keys)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _live_key(digest: str) -> str:
    return f"sutazai:refresh:{digest}"


def _spent_key(digest: str) -> str:
    return f"sutazai:refresh-spent:{digest}"


def _family_key(family: str) -> str:
    return f"sutazai:refresh-family:{family}"
