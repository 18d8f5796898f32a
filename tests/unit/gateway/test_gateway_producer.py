"""AsyncProducer without a reachable broker: timeouts and refusals answer NotStored."""

from __future__ import annotations

import asyncio
import time

import pytest

from riverbed.client import ClusterSettings
from riverbed.gateway.producer import AsyncProducer, NotStored
from riverbed.testing import free_port


def test_send_within_gives_up_after_its_timeout() -> None:
    async def main() -> None:
        # nothing listens there: librdkafka would report after message.timeout.ms (60 s)
        p = AsyncProducer(ClusterSettings(bootstrap=f"127.0.0.1:{free_port()}"), delivery_timeout_ms=60_000)
        try:
            t = time.monotonic()
            with pytest.raises(NotStored, match="no acknowledgement in time"):
                await p.send_within("t", b"v", None, None, 0.3)
            assert 0.25 < time.monotonic() - t < 5
            # the failed delivery report, when it comes, finds the future settled: no error
        finally:
            p._closed = True  # skip close()'s flush of the record that will not be delivered
            p._stop.set()
            p._thread.join(5)

    asyncio.run(main())


def test_delivery_failures_reach_every_waiter_in_one_hand_over() -> None:
    async def main() -> None:
        p = AsyncProducer(ClusterSettings(bootstrap=f"127.0.0.1:{free_port()}"), delivery_timeout_ms=300)
        try:
            results = await asyncio.gather(*(p.send("t", str(i).encode()) for i in range(50)), return_exceptions=True)
            assert all(isinstance(r, NotStored) for r in results), results
            assert all(r.retriable for r in results if isinstance(r, NotStored))
        finally:
            p.close(1)

    asyncio.run(main())
