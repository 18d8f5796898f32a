"""Overhead of each riverbed.messaging piece on a 1 KiB produce/consume loop, when nothing fails.

    .venv/bin/python benchmarks/messaging.py [--records 20000] [--reps 3] [--out r.json]

`riverbed serve` runs as a child process on a free port (and `redis-server` for the dedup
variant). For each variant, N records of 1 KiB are produced (confluent-kafka, linger 5 ms,
acks=all) to a fresh topic and timed until flush; then consumed in a new group, timed from the
first record to the Nth. Variants run interleaved, `--reps` times; the median is reported with
its overhead against the baseline of the same phase.

- baseline: plain produce; plain poll loop (auto commit)
- cloudevents: `to_binary(CloudEvent(...))` on produce, `from_message` on consume
- tracing: OpenTelemetry SDK with a no-op exporter: `tracing.produce`, `tracing.process_span`
- dlq: plain produce; `DeadLetterConsumer` with `commit_every=1` (a sync commit per record)
  and `commit_every=1000`
- dedup-redis: plain produce; `idempotent(handler, RedisStore)` in the plain poll loop
- dedup-redis-deferred: the same with `RedisStore(deferred_marks=True)` (one round trip a record)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from riverbed.messaging import CloudEvent, from_message, to_binary
from riverbed.messaging.deadletter import DeadLetterConsumer, RetryPolicy
from riverbed.messaging.dedup import RedisStore, idempotent
from riverbed.testing import BrokerProcess, free_port

VALUE = os.urandom(1024)


def _topic(bootstrap: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1)])[name].result(30)
    return name


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "queue.buffering.max.messages": 1_000_000})


def produce_plain(p: Producer, topic: str, n: int, ctx: dict[str, Any]) -> None:
    for i in range(n):
        p.produce(topic, value=VALUE, key=str(i).encode())
        if i % 1000 == 0:
            p.poll(0)


def produce_cloudevents(p: Producer, topic: str, n: int, ctx: dict[str, Any]) -> None:
    for i in range(n):
        key, value, headers = to_binary(CloudEvent(type="bench.v1", source="/bench", data=VALUE, datacontenttype="application/octet-stream", extensions={"partitionkey": str(i)}))
        p.produce(topic, value=value, key=key, headers=headers)
        if i % 1000 == 0:
            p.poll(0)


def produce_traced(p: Producer, topic: str, n: int, ctx: dict[str, Any]) -> None:
    from riverbed.messaging import tracing

    for i in range(n):
        tracing.produce(p, topic, value=VALUE, key=str(i).encode(), tracer=ctx["tracer"])
        if i % 1000 == 0:
            p.poll(0)


def _consume_loop(bootstrap: str, topic: str, n: int, handle: Callable[[Any], None], commit: bool = True) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": commit})
    c.subscribe([topic])
    seen, t0 = 0, 0.0
    try:
        while seen < n:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            if seen == 0:
                t0 = time.perf_counter()
            handle(m)
            seen += 1
        return time.perf_counter() - t0
    finally:
        c.close()


def consume_plain(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    return _consume_loop(bootstrap, topic, n, lambda m: None)


def consume_cloudevents(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    return _consume_loop(bootstrap, topic, n, from_message)


def consume_traced(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    from riverbed.messaging import tracing

    def handle(m: Any) -> None:
        with tracing.process_span(m, "bench", tracer=ctx["tracer"]):
            pass

    return _consume_loop(bootstrap, topic, n, handle)


def _consume_dlq(bootstrap: str, topic: str, n: int, commit_every: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    seen = [0]
    t0 = [0.0]

    def handle(m: Any) -> None:
        if seen[0] == 0:
            t0[0] = time.perf_counter()
        seen[0] += 1

    dlc = DeadLetterConsumer(c, _producer(bootstrap), handle, RetryPolicy(retry_delays=()), group="bench", commit_every=commit_every)
    dlc.subscribe([topic])
    try:
        while seen[0] < n:
            dlc.poll(1.0)
        return time.perf_counter() - t0[0]
    finally:
        dlc.commit()
        c.close()


def consume_dlq_1(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    return _consume_dlq(bootstrap, topic, n, 1)


def consume_dlq_1000(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    return _consume_dlq(bootstrap, topic, n, 1000)


def consume_dedup(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    store = RedisStore(ctx["redis"], window=600, prefix=f"{topic}:")
    return _consume_loop(bootstrap, topic, n, idempotent(lambda m: None, store, key=lambda m: (m.key() or b"").decode()))


def consume_dedup_deferred(bootstrap: str, topic: str, n: int, ctx: dict[str, Any]) -> float:
    store = RedisStore(ctx["redis"], window=600, prefix=f"{topic}:", deferred_marks=True)
    try:
        return _consume_loop(bootstrap, topic, n, idempotent(lambda m: None, store, key=lambda m: (m.key() or b"").decode()))
    finally:
        store.flush()


VARIANTS: dict[str, tuple[Callable[..., None], Callable[..., float]]] = {
    "baseline": (produce_plain, consume_plain),
    "cloudevents": (produce_cloudevents, consume_cloudevents),
    "tracing": (produce_traced, consume_traced),
    "dlq-commit-every-1": (produce_plain, consume_dlq_1),
    "dlq-commit-every-1000": (produce_plain, consume_dlq_1000),
    "dedup-redis": (produce_plain, consume_dedup),
    "dedup-redis-deferred": (produce_plain, consume_dedup_deferred),
}


def _tracer() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class NoOpExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NoOpExporter()))
    return provider.get_tracer("bench")


def _redis(tmp: Path) -> tuple[Any, subprocess.Popen[bytes]]:
    import redis

    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return redis.Redis(host="127.0.0.1", port=port), proc


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", action="append", help="run only these variants (and the baseline)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    names = ["baseline", *(v for v in VARIANTS if v != "baseline" and (not args.only or v in args.only))]
    tmp = Path(tempfile.mkdtemp(prefix="bench-messaging-"))
    redis_client, redis_proc = _redis(tmp)
    ctx = {"tracer": _tracer(), "redis": redis_client}
    results: dict[str, dict[str, list[float]]] = {v: {"produce": [], "consume": []} for v in names}
    try:
        with BrokerProcess(tmp / "data") as broker:
            bootstrap = broker.bootstrap
            for rep in range(args.reps):
                for name in names:
                    produce, consume = VARIANTS[name]
                    topic = _topic(bootstrap)
                    p = _producer(bootstrap)
                    t0 = time.perf_counter()
                    produce(p, topic, args.records, ctx)
                    assert p.flush(120) == 0
                    results[name]["produce"].append(args.records / (time.perf_counter() - t0))
                    results[name]["consume"].append(args.records / consume(bootstrap, topic, args.records, ctx))
                    print(f"rep {rep} {name:22} produce {results[name]['produce'][-1]:9.0f}/s  consume {results[name]['consume'][-1]:9.0f}/s", flush=True)
    finally:
        redis_proc.terminate()
        redis_proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    base = {phase: statistics.median(results["baseline"][phase]) for phase in ("produce", "consume")}
    print(f"\n{'variant':22} {'produce/s':>10} {'overhead':>9} {'consume/s':>10} {'overhead':>9}")
    summary = {}
    for name in names:
        med = {phase: statistics.median(results[name][phase]) for phase in ("produce", "consume")}
        over = {phase: 100.0 * (1 - med[phase] / base[phase]) for phase in med}
        summary[name] = {"median": med, "overhead_pct": over, "runs": results[name]}
        print(f"{name:22} {med['produce']:10.0f} {over['produce']:8.1f}% {med['consume']:10.0f} {over['consume']:8.1f}%")
    if args.out:
        args.out.write_text(json.dumps({"records": args.records, "reps": args.reps, "results": summary}, indent=2))


if __name__ == "__main__":
    main()
