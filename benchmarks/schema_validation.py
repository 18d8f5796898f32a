"""Produce at 1 KiB with schema-id validation off, on (ids) and full (ids + Avro decoding).

    .venv/bin/python benchmarks/schema_validation.py [--records 100000] [--rounds 3] [--out r.json]

`riverbed serve` (durable defaults, no embedded registry) and `riverbed registry` run as child
processes. One Avro schema is registered; every record's value is the same serializer-format
bytes (magic 0, the id, an Avro record of ~1 KiB: a string field and two longs), so all three
topics take the same records and the client's cost is the same. Three 6-partition topics:
``off`` (no schema configs), ``id`` (confluent.value.schema.validation=true), ``full``
(riverbed.value.schema.validation=full). Each round produces N records to each topic in turn
(acks=all, linger.ms=5) and records the broker process's CPU-seconds (psutil, all threads,
user + system; the registry is another process and not counted) and the wall time.

The figure to compare is broker CPU-s per GB (the median over rounds): on a shared, loaded
machine wall-clock throughput mostly measures the other tenants.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from riverbed.testing import BrokerProcess, free_port

PARTITIONS = 6
SCHEMA = {
    "type": "record",
    "name": "Reading",
    "namespace": "bench",
    "fields": [{"name": "id", "type": "long"}, {"name": "at", "type": "long"}, {"name": "body", "type": "string"}],
}
MODES = {
    "off": {},
    "id": {"confluent.value.schema.validation": "true"},
    "full": {"confluent.value.schema.validation": "true", "riverbed.value.schema.validation": "full"},
}


def value_of(schema_id: int, size: int = 1024) -> bytes:
    import fastavro

    parsed = fastavro.parse_schema(SCHEMA)
    body = "x" * (size - 5 - 1 - 1 - 2)  # framing, two one-byte longs, the string's 2-byte length
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, {"id": 7, "at": 42, "body": body})
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


def create_topics(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(f"bench-{m}", PARTITIONS, 1, config=c) for m, c in MODES.items()], operation_timeout=30)
    for f in futures.values():
        f.result(30)


def produce(bootstrap: str, topic: str, value: bytes, n: int) -> float:
    from confluent_kafka import Producer

    failed: list[str] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "message.timeout.ms": 120_000})

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    t0 = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    if p.flush(300) != 0 or failed:
        raise RuntimeError(f"{topic}: {len(failed)} records failed: {failed[:3]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="riverbed-schema-validation-bench-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", extra=["--log-level", "WARNING"]).start()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        reg = subprocess.Popen([sys.executable, "-m", "riverbed", "registry", "--bootstrap", broker.bootstrap, "--listen", f"127.0.0.1:{port}"])
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("registry did not start")
                time.sleep(0.05)
            r = httpx.post(f"{url}/subjects/bench-id-value/versions", json={"schema": json.dumps(SCHEMA)}, timeout=30)
            schema_id = r.json()["id"]
            for m in ("off", "full"):  # the same schema under each topic's subject (TopicNameStrategy)
                httpx.post(f"{url}/subjects/bench-{m}-value/versions", json={"schema": json.dumps(SCHEMA)}, timeout=30).raise_for_status()
            value = value_of(schema_id)
            create_topics(broker.bootstrap)
            assert broker.proc is not None
            proc = psutil.Process(broker.proc.pid)
            produce(broker.bootstrap, "bench-full", value, 1000)  # warm-up: the index has read `_schemas`
            rounds: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
            for rnd in range(args.rounds):
                for mode in MODES:
                    c0 = proc.cpu_times()
                    seconds = produce(broker.bootstrap, f"bench-{mode}", value, args.records)
                    c1 = proc.cpu_times()
                    cpu = (c1.user + c1.system) - (c0.user + c0.system)
                    gb = args.records * len(value) / 1e9
                    row = {"cpu_s_per_gb": round(cpu / gb, 3), "mb_per_s": round(gb * 1000 / seconds, 1), "seconds": round(seconds, 2)}
                    rounds[mode].append(row)
                    print(f"round {rnd + 1} {mode}: {row}", flush=True)
        finally:
            reg.terminate()
            reg.wait(30)
            broker.terminate()
    summary = {
        m: {
            "median_cpu_s_per_gb": statistics.median(r["cpu_s_per_gb"] for r in rows),
            "median_mb_per_s": statistics.median(r["mb_per_s"] for r in rows),
        }
        for m, rows in rounds.items()
    }
    off = summary["off"]["median_cpu_s_per_gb"]
    for m in ("id", "full"):
        summary[m]["cpu_vs_off_pct"] = round((summary[m]["median_cpu_s_per_gb"] / off - 1) * 100, 1)
        # paired within each round (the load on a shared machine drifts between rounds)
        extra = [r["cpu_s_per_gb"] - o["cpu_s_per_gb"] for r, o in zip(rounds[m], rounds["off"], strict=True)]
        summary[m]["median_extra_cpu_s_per_gb"] = round(statistics.median(extra), 3)
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "records": args.records,
        "value_bytes": len(value),
        "nproc": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "note": "measured on a shared, loaded machine: compare CPU-s per GB, not MB/s",
        "rounds": rounds,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
