"""CPU per record of riverbed.sql's topologies against the same pipelines in riverbed.streams,
without a broker: records piped through riverbed.streams' TestDriver (memory stores), so only
the topologies' own Python is measured (robust on a loaded machine, unlike records/s).

    python benchmarks/sql_topology.py [--records 20000] [--grace0] [--batch] [--profile sql_count]

The pipelines of benchmarks/sql.py: (a) filter ``WHERE status = 'VIP'``, (b) tumbling 10 s
``COUNT(*) GROUP BY id`` (the SQL query with ksqlDB's default 24 h grace unless --grace0, the
streams one with none, riverbed's default). Prints µs of process CPU per record, the best of
--rounds rounds. ``--batch`` drives the task as the runtime does (``Task.process_messages`` with
batches of 500 consumed messages, the fused path) instead of the TestDriver's record-at-a-time
``Task.process``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections.abc import Callable

from riverbed.sql import ast as A
from riverbed.sql.engine import source_from_ddl
from riverbed.sql.parser import parse_one
from riverbed.sql.planner import Planner, SinkSpec
from riverbed.streams import JSON, LONG, STRING, StreamsApp, TestDriver, TimeWindows, WindowedSerde
from riverbed.streams.stores import MemoryEngine
from riverbed.streams.task import Task

DDL = "CREATE STREAM users (id STRING KEY, status STRING, n BIGINT) WITH (kafka_topic='users', value_format='JSON');"


def sql_app(statement: str) -> StreamsApp:
    ddl = parse_one(DDL)
    assert isinstance(ddl, A.CreateSource)
    st = parse_one(statement)
    assert isinstance(st, A.CreateAs)
    plan = Planner({"USERS": source_from_ddl(ddl)}, "q", "unused").plan(st.query, sink=SinkSpec(st.name, "out", "KAFKA", "JSON"))
    return plan.app


def streams_count() -> StreamsApp:
    app = StreamsApp("count", "unused")
    (app.stream("users", STRING, JSON).group_by_key().windowed_by(TimeWindows.of(10_000))
        .count(name="c").to_stream().to("out", WindowedSerde(STRING, 10_000), LONG))
    return app


def streams_filter() -> StreamsApp:
    app = StreamsApp("filter", "unused")
    app.stream("users", STRING, JSON).filter(lambda _k, v: v["status"] == "VIP").to("out", STRING, JSON)
    return app


class _Msg:
    """What Task.process_messages reads of a confluent-kafka message."""

    __slots__ = ("_k", "_off", "_ts", "_v")

    def __init__(self, key: bytes, value: bytes, ts: int, offset: int) -> None:
        self._k, self._v, self._ts, self._off = key, value, ts, offset

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def headers(self) -> None:
        return None

    def offset(self) -> int:
        return self._off


class _Discard:
    sent = 0

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int | None) -> None:
        self.sent += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--grace0", action="store_true", help="the SQL count with GRACE PERIOD 0 SECONDS, as the streams one")
    ap.add_argument("--profile", help="cProfile one case instead (its name as printed)")
    ap.add_argument("--batch", action="store_true", help="Task.process_messages with batches of 500 (the runtime's path)")
    args = ap.parse_args()
    grace = ", GRACE PERIOD 0 SECONDS" if args.grace0 else ""
    cases: dict[str, Callable[[], StreamsApp]] = {
        "streams_count": streams_count,
        "sql_count": lambda: sql_app("CREATE TABLE c AS SELECT id, COUNT(*) AS n FROM users "
                                     f"WINDOW TUMBLING (SIZE 10 SECONDS{grace}) GROUP BY id EMIT CHANGES;"),
        "streams_filter": streams_filter,
        "sql_filter": lambda: sql_app("CREATE STREAM vip AS SELECT * FROM users WHERE status = 'VIP' EMIT CHANGES;"),
    }
    base = 1_700_000_000_000
    recs = [(f"u{i % args.keys}".encode(), json.dumps({"status": "VIP" if i % 4 == 0 else "regular", "n": i}).encode(),
             base + i * 10) for i in range(args.records)]

    msgs = [_Msg(k, v, ts, i) for i, (k, v, ts) in enumerate(recs)]

    def drive_batches(app: StreamsApp) -> float:
        topology = app.topology()
        subs = [s for s in topology.subtopologies if "users" in s.sources]
        assert len(topology.subtopologies) == 1, "one sub-topology (no repartition) expected"
        task = Task(subs[0], 0, _Discard(), lambda _s, _t: MemoryEngine(), topology.changelog_topic,
                    logging_enabled=True, errors=topology.errors).start()
        t0 = time.process_time()
        for i in range(0, len(msgs), 500):
            task.process_messages("users", msgs[i:i + 500])
        return time.process_time() - t0

    def drive(app: StreamsApp) -> float:
        if args.batch:
            return drive_batches(app)
        with TestDriver(app) as d:
            t0 = time.process_time()
            for k, v, ts in recs:
                d.pipe_raw("users", k, v, ts)
            return time.process_time() - t0

    if args.profile:
        p = cProfile.Profile()
        app = cases[args.profile]()
        p.enable()
        drive(app)
        p.disable()
        pstats.Stats(p).sort_stats("tottime").print_stats(40)
        return 0
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, make in cases.items():
            us = drive(make()) / args.records * 1e6
            best[name] = min(best.get(name, us), us)
    print(json.dumps({"records": args.records, "us_per_record": {k: round(v, 1) for k, v in best.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
