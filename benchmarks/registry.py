"""Schema registry: lookups by id (what every consumer cache miss does) and registrations of new
versions, over HTTP keep-alive with several concurrent clients; optionally while the broker
runs a 1 KiB produce load.

    .venv/bin/python benchmarks/registry.py [--clients 8] [--seconds 10] [--with-produce] [--out r.json]

`riverbed serve` and `riverbed registry` run as child processes on free ports. Each client is a
process with one keep-alive `httpx.Client` (so the Python client's CPU does not share a GIL
with the others); latency is measured per request in the client, requests/s over all clients.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
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

SCHEMA = {"type": "record", "name": "OrderEvent", "namespace": "shop", "fields": [{"name": "orderId", "type": "string"}, {"name": "userId", "type": "string"}]}


def _lookups(url: str, ids: list[int], seconds: float, start: Any, out: Any) -> None:
    lat: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        c.get(f"/schemas/ids/{ids[0]}")
        start.wait()
        end = time.perf_counter() + seconds
        i = 0
        while (t0 := time.perf_counter()) < end:
            r = c.get(f"/schemas/ids/{ids[i % len(ids)]}")
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(r.text)
            i += 1
    out.put(lat)


def _registrations(url: str, worker: int, seconds: float, start: Any, out: Any) -> None:
    lat: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        start.wait()
        end = time.perf_counter() + seconds
        i = 0
        while (t0 := time.perf_counter()) < end:
            schema = {**SCHEMA, "fields": [*SCHEMA["fields"], *({"name": f"f{k}", "type": "int", "default": 0} for k in range(i))]}
            r = c.post(f"/subjects/bench-{worker}/versions", json={"schema": json.dumps(schema)})
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(r.text)
            i += 1
    out.put(lat)


def _produce(bootstrap: str, seconds: float, out: Any) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    value = os.urandom(1024)
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        try:
            p.produce("bench-load", value=value)
            n += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(60)
    out.put(n * 1024 / seconds / 1e6)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def run_phase(ctx: Any, target: Any, args_for: Any, clients: int, seconds: float, registry_proc: psutil.Process) -> dict[str, Any]:
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), seconds, start, out)) for i in range(clients)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # clients connected and warmed up (they wait on the event)
    cpu0 = registry_proc.cpu_times()
    start.set()
    lat: list[float] = []
    for _ in procs:
        lat += out.get(timeout=seconds + 120)
    for p in procs:
        p.join(30)
    cpu1 = registry_proc.cpu_times()
    return {
        "requests": len(lat),
        "requests_per_s": len(lat) / seconds,
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "max_ms": max(lat) * 1000,
        "registry_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="schema registry lookups and registrations")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--with-produce", action="store_true", help="also measure lookups while a 1 KiB produce load runs")
    ap.add_argument("--out")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="riverbed-registry-bench-") as tmp:
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
            ids = []
            with httpx.Client(base_url=url) as c:
                for i in range(100):
                    r = c.post(f"/subjects/lookup-{i}/versions", json={"schema": json.dumps({**SCHEMA, "name": f"E{i}"})})
                    ids.append(r.json()["id"])
            proc = psutil.Process(reg.pid)
            doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "clients": args.clients, "seconds": args.seconds, "nproc": os.cpu_count()}
            doc["lookup_idle"] = run_phase(ctx, _lookups, lambda i: (url, ids), args.clients, args.seconds, proc)
            print("lookup by id, broker idle:", doc["lookup_idle"])
            doc["register"] = run_phase(ctx, _registrations, lambda i: (url, i), args.clients, args.seconds, proc)
            print("registration of new versions:", doc["register"])
            if args.with_produce:
                out = ctx.Queue()
                load = ctx.Process(target=_produce, args=(broker.bootstrap, args.seconds + 3, out))
                load.start()
                time.sleep(1.5)
                doc["lookup_under_produce"] = run_phase(ctx, _lookups, lambda i: (url, ids), args.clients, args.seconds, proc)
                doc["produce_mb_per_s"] = out.get(timeout=args.seconds + 120)
                load.join(30)
                print("lookup by id while producing 1 KiB records:", doc["lookup_under_produce"], f"produce {doc['produce_mb_per_s']:.0f} MB/s")
        finally:
            reg.terminate()
            reg.wait(30)
            broker.terminate()
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
