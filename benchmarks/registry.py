"""Schema registry: lookups by id (what every consumer cache miss does) and registrations of new
versions, over HTTP keep-alive with several concurrent clients; optionally while the broker
runs a 1 KiB produce load.

    .venv/bin/python benchmarks/registry.py [--clients 8] [--seconds 10] [--with-produce] [--load wrk|python] [--out r.json]

`riverbed serve` and `riverbed registry` run as child processes on free ports. Lookups are
driven by `wrk` (C, one thread, `--clients` keep-alive connections, ids taken in turn by a Lua
script; Debian's `wrk` package) when it is installed, so that on a 2-core machine the load
generator does not take the CPU the registry is measured on; `--load python` (and every
registration) uses one process per client with a keep-alive `httpx.Client`, latency measured
per request in the client, requests/s over all clients.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
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


def _paced_lookups(url: str, ids: list[int], rate: float, seconds: float, out: Any) -> None:
    """Lookups at a fixed rate (what consumers' cache misses look like), latency measured from
    each request's scheduled time, so that a stall counts for every request it delayed."""
    lat: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        c.get(f"/schemas/ids/{ids[0]}")
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            r = c.get(f"/schemas/ids/{ids[i % len(ids)]}")
            lat.append(time.perf_counter() - due)
            if r.status_code != 200:
                raise RuntimeError(r.text)
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


WRK_SCRIPT = """
local ids = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/schemas/ids/" .. ids[(i %% #ids) + 1])
end
"""


def _wrk_ms(text: str) -> float:
    value = float(text.rstrip("usm"))
    return value / 1000 if text.endswith("us") else value * 1000 if text.endswith("s") and not text.endswith("ms") else value


def wrk_phase(url: str, ids: list[int], clients: int, seconds: float, registry_proc: psutil.Process) -> dict[str, Any]:
    """Lookups by id driven by wrk; its latency distribution (--latency) gives p50/p99."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % ", ".join(map(str, ids)))
    cpu0 = registry_proc.cpu_times()
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", f.name, url], capture_output=True, text=True, check=True).stdout
    cpu1 = registry_proc.cpu_times()
    os.unlink(f.name)
    lat = {line.split()[0]: _wrk_ms(line.split()[1]) for line in out.splitlines() if line.strip().startswith(("50%", "99%"))}
    requests = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
    errors = [line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    if errors:
        raise RuntimeError(out)
    return {
        "requests": requests,
        "requests_per_s": requests / seconds,
        "p50_ms": lat["50%"],
        "p99_ms": lat["99%"],
        "registry_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "load": "wrk",
    }


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
    ap.add_argument("--paced-rate", type=float, default=200.0, help="lookups/s of the paced client while the broker is loaded")
    ap.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python", help="what drives the lookups")
    ap.add_argument("--out")
    args = ap.parse_args()

    def lookups(url: str, ids: list[int], proc: psutil.Process) -> dict[str, Any]:
        if args.load == "wrk":
            return wrk_phase(url, ids, args.clients, args.seconds, proc)
        return run_phase(ctx, _lookups, lambda i: (url, ids), args.clients, args.seconds, proc)

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
            doc["load"] = args.load
            doc["lookup_idle"] = lookups(url, ids, proc)
            print("lookup by id, broker idle:", doc["lookup_idle"])
            doc["register"] = run_phase(ctx, _registrations, lambda i: (url, i), args.clients, args.seconds, proc)
            print("registration of new versions:", doc["register"])
            if args.with_produce:
                out = ctx.Queue()
                load = ctx.Process(target=_produce, args=(broker.bootstrap, args.seconds + 3, out))
                load.start()
                time.sleep(1.5)
                lat_out = ctx.Queue()
                cpu0 = proc.cpu_times()
                _paced = ctx.Process(target=_paced_lookups, args=(url, ids, args.paced_rate, args.seconds, lat_out))
                _paced.start()
                lat = lat_out.get(timeout=args.seconds + 120)
                _paced.join(30)
                cpu1 = proc.cpu_times()
                doc["lookup_paced_under_produce"] = {
                    "rate": args.paced_rate, "requests": len(lat), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat) * 1000,
                    "registry_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
                }
                doc["produce_mb_per_s"] = out.get(timeout=args.seconds + 120)
                load.join(30)
                print(f"lookup by id at {args.paced_rate:.0f}/s while producing 1 KiB records:", doc["lookup_paced_under_produce"], f"produce {doc['produce_mb_per_s']:.0f} MB/s")
                out = ctx.Queue()
                load = ctx.Process(target=_produce, args=(broker.bootstrap, args.seconds + 3, out))
                load.start()
                time.sleep(1.5)
                doc["lookup_saturated_under_produce"] = lookups(url, ids, proc)
                doc["produce_mb_per_s_saturated"] = out.get(timeout=args.seconds + 120)
                load.join(30)
                print("lookup by id, saturating, while producing 1 KiB records:", doc["lookup_saturated_under_produce"], f"produce {doc['produce_mb_per_s_saturated']:.0f} MB/s")
        finally:
            reg.terminate()
            reg.wait(30)
            broker.terminate()
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
