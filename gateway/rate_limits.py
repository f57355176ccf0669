"""Token buckets in Redis, taken in one Lua script: atomic, so racing requests cannot overdraw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

# KEYS: the buckets; ARGV: rate and burst of each bucket in turn.
# A request takes one token from every bucket or from none; each bucket stores its tokens and
# when it last refilled, and expires once it would be full again. "Now" is Redis's own clock,
# read inside the script: a time taken by each caller would reach Redis out of order under
# concurrency, move a bucket's `at` backwards, and count the same refill twice (an overdraw).
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens, wait = {}, 0
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local have = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  have = math.min(burst, have + math.max(0, now - at) * rate)
  tokens[i] = have
  if have < 1 then wait = math.max(wait, (1 - have) / rate) end
end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local left = tokens[i]
  if wait == 0 then left = left - 1 end
  redis.call('HSET', key, 'tokens', tostring(left), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 1)
end
return tostring(wait)
"""


@dataclass(frozen=True)
class Limit:
    """`rate` requests a second on average, up to `burst` at once."""

    rate: float
    burst: float


class RateLimiter:
    """Takes one token from each named bucket, or none; says how long to wait if refused."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._take = redis.register_script(_TAKE)

    async def take(self, buckets: Sequence[tuple[str, Limit]]) -> float:
        """0.0 when the request may go on, else the seconds until every bucket has a token."""
        args: list[float] = []
        for _, limit in buckets:
            args += [limit.rate, limit.burst]
        wait = await self._take(keys=[f"sutazai:rate:{name}" for name, _ in buckets], args=args)
        return float(wait)
