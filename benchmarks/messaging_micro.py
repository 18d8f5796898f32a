"""Per-record CPU cost of each riverbed.messaging piece, in small in-process loops (for
profiling and before/after comparisons on a loaded machine), against the cost of the plain
client calls measured in the same run.

    .venv/bin/python benchmarks/messaging_micro.py [--records 5000] [--reps 5] [--no-broker] [--out r.json]
    .venv/bin/python benchmarks/messaging_micro.py --compare /path/to/other/checkout/src       # before/after

Every variant runs ``--reps`` times, interleaved; the fastest repetition counts (the least
disturbed by other processes). Figures are µs per record. ``--compare`` times another
checkout's ``riverbed.messaging`` in the same loops (marked ``[other]``), so a before/after
ratio comes from one run on a loaded machine.

In process, on pre-built confluent-kafka ``Message`` objects (1 KiB values):
- produce: ``Producer.produce`` of a 1 KiB record into librdkafka's queue (no broker
  reachable: the call's own cost), then the same with ``to_binary(CloudEvent(...))`` and with
  ``tracing.produce`` (no SDK; SDK with a no-op exporter)
- consume-side pieces on messages already received: ``from_message``; ``tracing.process_span``
  (no SDK, records without ``traceparent``, all with one, each with its own; SDK with a
  no-op exporter)

With a broker (``riverbed serve`` as a child process, ``redis-server`` for dedup), per record
consumed from a topic of N records by a new group, from the first record to the last:
- ``poll()`` loop (baseline), ``consume(500)`` loop
- ``DeadLetterConsumer.poll`` and ``poll_batch(500)``, ``commit_every=1000``, nothing fails
- dedup on Redis: ``idempotent`` in the ``poll`` loop (two round trips a record) against
  ``poll_batch(500, dedup=DedupFilter(...))`` (two round trips a batch)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(
    0, os.environ.get("RIVERBED_SRC") or str(Path(__file__).resolve().parents[1] / "src")
)

from confluent_kafka import Consumer, Message, Producer

from riverbed.messaging import (
    CloudEvent,
    to_binary,
)

VALUE = os.urandom(1024)
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _timed(fn: Callable[[int], None], n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6


def _load_messaging(src: str) -> Any:
    """Another checkout's ``riverbed/messaging`` as a separate package (its imports are
    relative), to time it interleaved with this one."""
    import importlib.util

    path = Path(src) / "riverbed" / "messaging" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "messaging_other", path, submodule_search_locations=[str(path.parent)]
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["messaging_other"] = mod
    spec.loader.exec_module(mod)
    import importlib

    mod.tracing = importlib.import_module("messaging_other.tracing")
    return mod


def in_process(n: int, reps: int, other: Any = None) -> dict[str, float]:
    p = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "queue.buffering.max.messages": 2_000_000,
            "log_level": 0,
            "message.timeout.ms": 600_000,
        }
    )
    key, value, headers = to_binary(
        CloudEvent(
            type="bench.v1",
            source="/bench",
            data=VALUE,
            datacontenttype="application/octet-stream",
            extensions={"partitionkey": "1"},
        )
    )
    ce_msgs = [
        Message(topic="t", partition=0, offset=i, key=key, value=value, headers=headers)
        for i in range(n)
    ]
    plain = [
        Message(topic="t", partition=0, offset=i, key=b"k", value=VALUE, headers=None)
        for i in range(n)
    ]
    distinct_tp = [
        Message(
            topic="t",
            partition=0,
            offset=i,
            key=b"k",
            value=VALUE,
            headers=[("traceparent", f"00-{i + 1:032x}-{i + 1:016x}-01".encode())],
        )
        for i in range(n)
    ]
    with_tp = [
        Message(
            topic="t",
            partition=0,
            offset=i,
            key=b"k",
            value=VALUE,
            headers=[("traceparent", TRACEPARENT)],
        )
        for i in range(n)
    ]

    def produce_plain(k: int) -> None:
        for _ in range(k):
            p.produce("t", VALUE, b"k")

    def loop_only(k: int) -> None:
        for m in plain[:k]:
            m.value()

    import riverbed.messaging as current
    import riverbed.messaging.tracing  # noqa: F401  (sets current.tracing)

    plain_variants: dict[str, Callable[[int], None]] = {
        "produce: Producer.produce": produce_plain,
        "consume: loop over messages": loop_only,
    }
    sdk_variants: dict[str, Callable[[int], None]] = {}
    for suffix, mod in (("", current), (" [other]", other)):
        if mod is None:
            continue
        pv, sv = _variants(mod, p, ce_msgs, plain, with_tp, distinct_tp)
        plain_variants.update({k + suffix: v for k, v in pv.items()})
        sdk_variants.update({k + suffix: v for k, v in sv.items()})
    best: dict[str, float] = {}
    for phase in (plain_variants, sdk_variants):
        if phase is sdk_variants:
            _install_sdk()
        for _ in range(reps):
            for name, fn in phase.items():
                us = _timed(fn, n)
                best[name] = min(us, best.get(name, us))
                p.purge(in_queue=True)
                p.poll(0)
    return best


def _variants(
    mod: Any,
    p: Any,
    ce_msgs: list[Any],
    plain: list[Any],
    with_tp: list[Any],
    distinct_tp: list[Any],
) -> tuple[dict[str, Callable[[int], None]], dict[str, Callable[[int], None]]]:
    CloudEvent, to_binary, from_message, tracing = (
        mod.CloudEvent,
        mod.to_binary,
        mod.from_message,
        mod.tracing,
    )

    def produce_ce(k: int) -> None:
        for i in range(k):
            ck, cv, ch = to_binary(
                CloudEvent(
                    type="bench.v1",
                    source="/bench",
                    data=VALUE,
                    datacontenttype="application/octet-stream",
                    extensions={"partitionkey": str(i)},
                )
            )
            p.produce("t", value=cv, key=ck, headers=ch)

    def produce_traced(k: int) -> None:
        for _ in range(k):
            tracing.produce(p, "t", value=VALUE, key=b"k")

    def consume_ce(k: int) -> None:
        for m in ce_msgs[:k]:
            from_message(m)

    def spans(msgs: list[Any]) -> Callable[[int], None]:
        def run(k: int) -> None:
            for m in msgs[:k]:
                with tracing.process_span(m, "bench"):
                    pass

        return run

    plain_variants: dict[str, Callable[[int], None]] = {
        "produce: + CloudEvent + to_binary": produce_ce,
        "produce: tracing.produce, no SDK": produce_traced,
        "consume: from_message (binary CloudEvent)": consume_ce,
        "consume: process_span, no SDK, no traceparent": spans(plain),
        "consume: process_span, no SDK, one traceparent": spans(with_tp),
        "consume: process_span, no SDK, a trace per record": spans(distinct_tp),
    }
    sdk_variants: dict[str, Callable[[int], None]] = {
        "produce: tracing.produce, SDK no-op exporter": produce_traced,
        "consume: process_span, SDK no-op exporter": spans(with_tp),
        "consume: process_span, SDK no-op exporter, a trace per record": spans(distinct_tp),
    }
    return plain_variants, sdk_variants


def _install_sdk() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class NoOpExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NoOpExporter()))
    trace.set_tracer_provider(provider)


def with_broker(n: int, reps: int) -> dict[str, float]:
    import redis
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from riverbed.messaging import deadletter
    from riverbed.messaging.dedup import RedisStore, idempotent
    from riverbed.testing import BrokerProcess
    from riverbed.testing.servers import RedisServer

    has_batch = hasattr(deadletter.DeadLetterConsumer, "poll_batch")
    best: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        BrokerProcess(Path(tmp) / "data") as broker,
        RedisServer() as rs,
    ):
        bs = broker.bootstrap
        r = redis.Redis(host="127.0.0.1", port=rs.port)
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(30)
        p = Producer({"bootstrap.servers": bs, "linger.ms": 5})
        for i in range(n):
            _ck, cv, ch = to_binary(
                CloudEvent(
                    type="bench.v1",
                    source="/bench",
                    data=VALUE,
                    datacontenttype="application/octet-stream",
                )
            )
            p.produce(topic, value=cv, key=str(i).encode(), headers=ch)
            if i % 1000 == 0:
                p.poll(0)
        assert p.flush(60) == 0

        def consumer(auto: bool = True) -> Consumer:
            c = Consumer(
                {
                    "bootstrap.servers": bs,
                    "group.id": f"g-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": auto,
                }
            )
            return c

        def loop(step: Callable[[], int], c: Consumer) -> float:
            seen, t0 = 0, 0.0
            while seen < n:
                got = step()
                if got and not seen:
                    t0 = time.perf_counter()
                    got -= 1  # timing starts at the first record
                    seen = 1
                seen += got
            dt = time.perf_counter() - t0
            c.close()
            return dt / (n - 1) * 1e6

        def plain_poll() -> float:
            c = consumer()
            c.subscribe([topic])

            def step() -> int:
                m = c.poll(1.0)
                return int(m is not None and m.error() is None)

            return loop(step, c)

        def plain_batch() -> float:
            c = consumer()
            c.subscribe([topic])
            return loop(lambda: sum(1 for m in c.consume(500, 1.0) if m.error() is None), c)

        def dlq(batch: bool, dedup: bool) -> Callable[[], float]:
            def run() -> float:
                c = consumer(auto=False)
                store = RedisStore(r, window=600, prefix=f"{uuid.uuid4().hex[:6]}:")
                handler: Any = (
                    (lambda m: None) if (batch or not dedup) else idempotent(lambda m: None, store)
                )
                dlc = deadletter.DeadLetterConsumer(
                    c,
                    p,
                    handler,
                    deadletter.RetryPolicy(retry_delays=()),
                    group="bench",
                    commit_every=1000,
                )
                dlc.subscribe([topic])
                if batch:
                    from riverbed.messaging.dedup import DedupFilter

                    f = DedupFilter(store) if dedup else None
                    return loop(lambda: dlc.poll_batch(500, 1.0, dedup=f), c)
                return loop(lambda: int(dlc.poll(1.0)), c)

            return run

        variants: dict[str, Callable[[], float]] = {
            "broker: poll() loop": plain_poll,
            "broker: consume(500) loop": plain_batch,
            "broker: DeadLetterConsumer.poll, commit_every=1000": dlq(False, False),
            "broker: idempotent(RedisStore) under DeadLetterConsumer.poll": dlq(False, True),
        }
        if has_batch:
            variants["broker: DeadLetterConsumer.poll_batch(500), commit_every=1000"] = dlq(
                True, False
            )
            variants["broker: poll_batch(500) + DedupFilter(RedisStore)"] = dlq(True, True)
        for _ in range(reps):
            for name, fn in variants.items():
                us = fn()
                best[name] = min(us, best.get(name, us))
        r.close()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-broker", action="store_true")
    ap.add_argument(
        "--compare",
        help="another checkout's src directory: its messaging package is timed too, interleaved ([other])",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = in_process(
        args.records, args.reps, _load_messaging(args.compare) if args.compare else None
    )
    if not args.no_broker:
        results.update(with_broker(args.records, max(1, args.reps // 2)))
    produce_base = results["produce: Producer.produce"]
    loop_base = results["consume: loop over messages"]
    poll_base = results.get("broker: poll() loop")
    print(f"{'variant':66} {'µs/record':>9} {'added':>7} {'overhead':>9}")
    for name, us in results.items():
        kind = name.split(":", 1)[0]
        if kind == "produce":
            added, base = us - produce_base, produce_base
        elif kind == "consume":
            added, base = us - loop_base, poll_base  # against a real poll() loop's cost
        else:
            added, base = us - (poll_base or us), poll_base
        pct = f"{100 * added / base:8.0f}%" if base and added > 0 else ""
        print(f"{name:66} {us:9.2f} {added:7.2f} {pct:>9}")
    print(f"\nload average {os.getloadavg()}, records {args.records}, reps {args.reps}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "records": args.records,
                    "reps": args.reps,
                    "us_per_record": results,
                    "loadavg": os.getloadavg(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
