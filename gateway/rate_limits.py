"""Token buckets in Redis, one Lua script per take: atomic, so racing requests cannot overdraw."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

# KEYS[1] bucket; ARGV: rate (tokens/s), burst, now (s, float).
# The bucket stores its tokens and when it last refilled; it expires once it would be full.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Limit:
    """`rate` requests a second on average, up to `burst` at once."""

    rate: float
    burst: float


class RateLimiter:
    """Takes one token from a named bucket; says how long to wait when it is empty."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE)

    async def take(self, bucket: str, limit: Limit) -> float:
        """0.0 when the request may go on, else the seconds until a token is back."""
        allowed, wait = await self._take(
            keys=[f"sutazai:rate:{bucket}"], args=[limit.rate, limit.burst, time.time()]
        )
        return 0.0 if int(allowed) else float(wait)
