"""Provider event ids shared by several gateway instances, in Redis (``dedup_redis`` on an
inbound route): the first instance to claim an id (``SET NX`` with the value ``pending`` and a
short expiry) produces the event; the others wait until it is ``done`` (its result JSON,
kept for ``dedup_ttl`` seconds) and answer 202 without producing, or until the claim is gone
(the first copy failed) and try again. Needs the ``redis`` package (riverbed[messaging])."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

PENDING = b"pending"


class SharedUnavailable(Exception):
    """The shared store could not be asked (answered 503: nothing is acknowledged unsure)."""


class RedisSeen:
    def __init__(self, url: str, ttl: float, pending_ttl: float, prefix: str) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - the messaging extra is missing
            raise RuntimeError("dedup_redis needs the redis package: pip install 'riverbed[messaging]'") from None
        self.client: Any = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.ttl_ms, self.pending_ms, self.prefix = int(ttl * 1000), int(pending_ttl * 1000), prefix

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:  # redis.exceptions.* and OSError
            raise SharedUnavailable(f"redis: {type(exc).__name__}: {exc}") from None

    async def claim(self, event_id: str, timeout: float) -> dict[str, Any] | None:
        """None when this instance now owns the id (it must call done or forget); else the
        first copy's result once it is done. SharedUnavailable when the store cannot be asked
        or the first copy is still pending after `timeout`."""
        key = self.prefix + event_id
        deadline = time.monotonic() + timeout
        while True:
            if await self._call(self.client.set, key, PENDING, nx=True, px=self.pending_ms):
                return None
            value = await self._call(self.client.get, key)
            if value is not None and value != PENDING:
                result: dict[str, Any] = json.loads(value)
                return result
            if time.monotonic() > deadline:
                raise SharedUnavailable("an earlier copy of this event is still being stored by another instance")
            await asyncio.sleep(0.02 if value is None else 0.05)

    async def done(self, event_id: str, result: dict[str, Any]) -> None:
        await self._call(self.client.set, self.prefix + event_id, json.dumps(result), px=self.ttl_ms)

    async def forget(self, event_id: str) -> None:
        await self._call(self.client.delete, self.prefix + event_id)

    async def close(self) -> None:
        await self.client.aclose()
