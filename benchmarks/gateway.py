"""riverbed.gateway throughput and latency, against `riverbed serve` in a child process, with the
gateway itself in another child process (`riverbed gateway run`), so the load generator (this
process) does not share its GIL.

    .venv/bin/python benchmarks/gateway.py [--seconds 5] [--concurrency 64]
        [--connections 1000] [--rate 1000] [--out r.json]

- inbound: Stripe-signed webhooks (unique event ids, HMAC checked, replay window on, acks=all)
  posted by `--concurrency` keep-alive connections for `--seconds`; accepted (202) per second.
- rest: REST Proxy v3 produce in streamed mode, one chunked request of JSON records; records
  acknowledged per second.
- fanout (per user): `--connections` WebSocket clients, each its own user (JWT) on a route
  filtered by key; `--rate` records/s for `--seconds`, keyed round-robin over the users, with
  their produce time in the value: latency from produce to receipt (p50/p99/max), records
  delivered per second, gateway CPU seconds and RSS per connection (psutil).
- broadcast: `--broadcast-connections` clients on an unfiltered route, each getting every one
  of `--broadcast-rate` records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from riverbed.gateway import sign_stripe
from riverbed.testing import BrokerProcess, free_port

SECRET = "whsec_bench"
TOML = """
[gateway]
listen = "127.0.0.1:{port}"
max_body = 10000000

[rest]
enabled = true

[[webhooks.in]]
path = "/hooks/stripe"
topic = "bench.stripe"
verify = "stripe"
secret = "{secret}"
key = "data.object.customer"

[auth]
key = "{secret}-signing-key-for-the-benchmark"

[[push]]
path = "/push/all"
topic = "bench.push"
auth = "none"
queue = 10000

[[push]]
path = "/push/mine"
topic = "bench.users"
filter = "key"
queue = 1000
"""


def start_gateway(bootstrap: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = tmp / "gateway.toml"
    cfg.write_text(TOML.format(port=port, secret=SECRET))
    log = open(tmp / "gateway.log", "wb")  # noqa: SIM115 - the child's
    proc = subprocess.Popen([sys.executable, "-m", "riverbed", "gateway", "run", str(cfg), "-b", bootstrap, "--log-level", "WARNING"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start: " + (tmp / "gateway.log").read_text()[-2000:])


async def inbound(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams (httpx would be the bottleneck)."""
    host, port = url.removeprefix("http://").split(":")
    now = int(time.time())
    ok = bad = 0
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal ok, bad
        reader, writer = await asyncio.open_connection(host, int(port))
        i = 0
        while time.monotonic() < stop:
            body = json.dumps({"id": f"evt_{n}_{i}", "type": "payment_intent.succeeded", "data": {"object": {"customer": f"cus_{i % 100}", "amount": 4200}}}).encode()
            head = (f"POST /hooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Stripe-Signature: {sign_stripe(body, SECRET, now)}\r\nContent-Length: {len(body)}\r\n\r\n")
            t = time.perf_counter()
            writer.write(head.encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            if status == 202:
                ok += 1
            else:
                bad += 1
            i += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"concurrency": concurrency, "accepted": ok, "refused": bad, "per_second": round(ok / elapsed), "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1)}


def rest(url: str, cluster_id: str, records: int) -> dict[str, Any]:
    record = json.dumps({"value": {"type": "JSON", "data": {"customer": "cus_1", "amount": 4200, "pad": "x" * 200}}}).encode()

    def body() -> Any:
        for _ in range(records // 100):
            yield record * 100

    t = time.perf_counter()
    r = httpx.post(f"{url}/v3/clusters/{cluster_id}/topics/bench.stripe/records", content=body(), timeout=300)
    elapsed = time.perf_counter() - t
    reports = r.text.splitlines()
    ok = sum('"error_code":200' in line for line in reports)
    return {"records": records, "acknowledged": ok, "per_second": round(ok / elapsed)}


async def fanout(url: str, bootstrap: str, connections: int, rate: int, seconds: float, gw_pid: int, per_user: bool, profile: Path | None = None) -> dict[str, Any]:
    """per_user: connection i is user-i on the filtered route and record n is keyed user-(n % N),
    so `rate` records/s are spread over the users (the lecture's case); otherwise every
    connection gets every record (broadcast)."""
    import jwt
    from websockets.asyncio.client import connect

    proc = psutil.Process(gw_pid)
    rss_before = proc.memory_info().rss
    latencies: list[float] = []
    received = 0
    sockets = []
    key = f"{SECRET}-signing-key-for-the-benchmark"
    ws_base = url.replace("http", "ws")
    for i in range(connections):
        target = f"{ws_base}/push/mine?access_token={jwt.encode({'sub': f'user-{i}'}, key, algorithm='HS256')}" if per_user else f"{ws_base}/push/all"
        sockets.append(await connect(target, max_size=None, open_timeout=120, ping_interval=None))
    rss_connected = proc.memory_info().rss
    # this process holds as many client sockets as the gateway: keep its own full garbage
    # collections (which walk every long-lived object) out of the measured latencies
    gc.collect()
    gc.freeze()
    topic = "bench.users" if per_user else "bench.push"

    async def reader(ws: Any, sample: bool) -> None:
        nonlocal received
        async for text in ws:
            received += 1
            if sample:
                latencies.append(time.time() - json.loads(text)["value"]["t"])

    # broadcast: every frame counts, latencies from 100 clients (parsing all would measure us)
    sample_every = 1 if per_user else max(1, connections // 100)
    tasks = [asyncio.create_task(reader(ws, i % sample_every == 0)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(1 + connections / 2000)  # let the handshakes' work settle
    cpu_before = proc.cpu_times()
    spy = None
    if profile is not None:  # py-spy on the gateway while records flow (collapsed stacks)
        py_spy = os.environ.get("PY_SPY", "py-spy")
        spy = subprocess.Popen([py_spy, "record", "-p", str(gw_pid), "-d", str(int(seconds) + 1), "-r", "100", "-f", "raw", "-o", str(profile), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def produce() -> int:
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
        n = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            due = start + n / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(min(0.001, wait))
                continue
            p.produce(topic, json.dumps({"t": time.time(), "n": n}).encode(), key=f"user-{n % connections}".encode() if per_user else None)
            p.poll(0)
            n += 1
        p.flush(10)
        return n

    started = time.monotonic()
    produced = await asyncio.to_thread(produce)
    expect = produced if per_user else produced * connections
    deadline = time.monotonic() + 30
    while received < expect and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    cpu_after = proc.cpu_times()
    if spy is not None:
        spy.wait(30)
    rss_peak = proc.memory_info().rss
    for t in tasks:
        t.cancel()
    for ws in sockets:
        await ws.close()
    latencies.sort()

    def pct(xs: list[float], q: float) -> float | None:
        return round(xs[min(len(xs) - 1, int(len(xs) * q))] * 1000, 1) if xs else None

    return {
        "mode": "per-user" if per_user else "broadcast", "connections": connections, "rate": rate, "produced": produced,
        "delivered": received, "expected": expect, "delivered_per_second": round(received / elapsed),
        "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "max_ms": pct(latencies, 1.0),
        "gateway_cpu_s": round((cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system), 1),
        "rss_idle_mb": round(rss_before / 2**20, 1), "rss_per_connection_kb": round((rss_connected - rss_before) / connections / 1024, 1),
        "rss_peak_mb": round(rss_peak / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rest-records", type=int, default=20000)
    ap.add_argument("--broadcast-connections", type=int, default=100)
    ap.add_argument("--broadcast-rate", type=int, default=100)
    ap.add_argument("--only", choices=["inbound", "rest", "fanout", "broadcast"], action="append")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--profile", type=Path, help="py-spy (PY_SPY=path) the gateway during each fan-out: PROFILE.<mode>.txt, collapsed stacks")
    args = ap.parse_args()
    only = set(args.only or ["inbound", "rest", "fanout", "broadcast"])
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_s:
        tmp = Path(tmp_s)
        with BrokerProcess(tmp / "data") as broker:
            gw, url = start_gateway(broker.bootstrap, tmp)
            try:
                if "inbound" in only:
                    results["inbound"] = asyncio.run(inbound(url, args.seconds, args.concurrency))
                    print("inbound webhooks:", results["inbound"], flush=True)
                if "rest" in only:
                    cluster_id = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).cluster_id
                    results["rest"] = rest(url, str(cluster_id), args.rest_records)
                    print("rest v3 produce:", results["rest"], flush=True)
                if "fanout" in only:
                    results["fanout_per_user"] = asyncio.run(fanout(url, broker.bootstrap, args.connections, args.rate, args.seconds, gw.pid, True, args.profile and args.profile.with_suffix(".per-user.txt")))
                    print("fan-out, per user:", results["fanout_per_user"], flush=True)
                if "broadcast" in only:
                    results["fanout_broadcast"] = asyncio.run(fanout(url, broker.bootstrap, args.broadcast_connections, args.broadcast_rate, args.seconds, gw.pid, False, args.profile and args.profile.with_suffix(".broadcast.txt")))
                    print("fan-out, broadcast:", results["fanout_broadcast"], flush=True)
            finally:
                gw.terminate()
                gw.wait(30)
    results["id"] = uuid.uuid4().hex[:8]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
