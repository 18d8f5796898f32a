"""Broker CPU of one full Fetch of 10,000 idle partitions (100 topics x 100, nothing new),
the request librdkafka repeats for an idle consumer group (issue 9): decoding, reading and
encoding through ``Broker.handle`` on the broker's event loop, the same request bytes on one
connection each time, ``max_wait_ms`` 0 (no long poll).

    PYTHONPATH=OLD/src .venv/bin/python benchmarks/many_partitions_fetch.py [--label NAME]

Prints the median of three rounds of five fetches, in CPU milliseconds of this process per
fetch (``time.process_time``: robust on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import time

from riverbed.protocol.messages.fetch import FetchRequest
from riverbed.protocol.primitives import Writer
from riverbed.server.handler import ConnectionInfo
from riverbed.testing import EmbeddedBroker

VERSION = 11  # librdkafka 2.x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    with EmbeddedBroker() as eb:
        b = eb.broker

        def create(first: int) -> None:
            for t in range(first, first + 5):
                b.create_topic(f"mp-{t:03d}", 100, {})

        for first in range(0, 100, 5):  # (in steps: one call may take long on a loaded machine)
            eb.call(create, first)
        req = FetchRequest(
            replica_id=-1,
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=52428800,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=[
                FetchRequest.FetchTopic(
                    topic=f"mp-{t:03d}",
                    partitions=[FetchRequest.FetchPartition(partition=p, fetch_offset=0, partition_max_bytes=1 << 20) for p in range(100)],
                )
                for t in range(100)
            ],
        )
        w = Writer()  # request header v1
        w.int16(FetchRequest.API_KEY)
        w.int16(VERSION)
        w.int32(7)
        w.nullable_string("bench", False)
        frame = bytes(w.getvalue()) + bytes(req.encode(VERSION))
        conn = ConnectionInfo(peer="bench", listener="PLAINTEXT", connection_id=1)

        def run(n: int) -> float:
            t0 = time.process_time()
            for _ in range(n):
                out = b.handle(conn, bytearray(frame))
                assert out and sum(len(c) for c in out) > 0
            return (time.process_time() - t0) / n

        eb.call(run, 2)
        rounds = sorted(eb.call(run, 5) for _ in range(3))
    print(json.dumps({"label": args.label, "cpu_ms_per_full_fetch": round(rounds[1] * 1000, 2), "rounds_ms": [round(x * 1000, 2) for x in rounds]}))


if __name__ == "__main__":
    main()
