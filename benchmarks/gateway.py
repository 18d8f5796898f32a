"""riverbed.gateway throughput and latency, against `riverbed serve` in a child process, with the
gateway itself in another child process (`riverbed gateway run`), so the load generator (this
process) does not share its GIL.

    .venv/bin/python benchmarks/gateway.py [--seconds 5] [--concurrency 64] [--load-processes 1]
        [--connections 1000] [--rate 1000] [--linger-ms N] [--out r.json] [--profile p]
    PY_SPY=.venv/bin/py-spy PY_SPY_ARGS=--native ... --profile p   # native frames too

- inbound: Stripe-signed webhooks (unique event ids, HMAC checked, replay window on, acks=all)
  posted by `--concurrency` keep-alive connections, spread over `--load-processes` processes,
  for `--seconds`; every request is built and signed before the clock starts; accepted (202)
  per second, p50/p99, and the gateway's CPU per accepted request (also by thread: `main` is
  the event loop, `rdk:broker` librdkafka's), the load generator's and the broker's CPU.
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
import re
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
{extra}

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


def start_gateway(bootstrap: str, tmp: Path, linger_ms: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = tmp / "gateway.toml"
    cfg.write_text(TOML.format(port=port, secret=SECRET, extra="" if linger_ms is None else f"linger_ms = {linger_ms}"))
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


def _py_spy(pid: int, seconds: float, profile: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy on the gateway while the load runs (collapsed stacks in `profile`), or None."""
    if profile is None:
        return None
    py_spy = os.environ.get("PY_SPY", "py-spy")
    extra = os.environ.get("PY_SPY_ARGS", "").split()  # e.g. "--native --threads"
    if "--native" not in extra:  # native stacks need the process paused at each sample
        extra.append("--nonblocking")
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "100", "-f", "raw", "-o", str(profile), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each of the process's threads, summed by thread name
    (librdkafka's threads are named rdk:main, rdk:broker<n>...; Python's other threads are
    all "python"; the event loop's is "main")."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        name = "main" if task.name == str(pid) else re.sub(r"\d+$", "", name)  # rdk:broker1, rdk:broker2 -> rdk:broker
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _requests(host: str, tag: str, count: int, now: int) -> list[bytes]:
    """`count` complete, Stripe-signed POSTs with unique event ids, made before the clock starts
    (signing and JSON on the load side would otherwise compete with the gateway for the CPU)."""
    out = []
    for i in range(count):
        body = json.dumps({"id": f"evt_{tag}_{i}", "type": "payment_intent.succeeded", "data": {"object": {"customer": f"cus_{i % 100}", "amount": 4200}}}).encode()
        out.append((f"POST /hooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Stripe-Signature: {sign_stripe(body, SECRET, now)}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending pre-built requests one at a time (a minimal
    client on asyncio's protocol layer: httpx or asyncio streams would be the bottleneck)."""

    def __init__(self, requests: list[bytes], stop: float, done: asyncio.Future[None]) -> None:
        self.requests, self.stop, self.done = requests, stop, done
        self.buf = b""
        self.i = 0
        self.ok = self.bad = 0
        self.latencies: list[float] = []
        self.transport: Any = None
        self.sent = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send_next(self) -> None:
        if self.i >= len(self.requests) or time.monotonic() >= self.stop:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.sent = time.perf_counter()
        self.transport.write(self.requests[self.i])
        self.i += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            at = head.lower().find(b"content-length:")
            length = 0
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15:eol if eol >= 0 else len(head)])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.latencies.append(time.perf_counter() - self.sent)
            if head[9:12] == b"202":
                self.ok += 1
            else:
                self.bad += 1
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _inbound_load(host: str, port: int, tag: str, connections: int, per_connection: int, start_at: float, seconds: float) -> dict[str, Any]:
    now = int(time.time())
    requests = [_requests(host, f"{tag}_{n}", per_connection, now) for n in range(connections)]
    loop = asyncio.get_running_loop()
    conns: list[_Conn] = []
    for n in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(lambda n=n, done=done: _Conn(requests[n], 0.0, done), host, port)  # type: ignore[misc]
        conns.append(proto)
    gc.collect()
    gc.freeze()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    stop = time.monotonic() + seconds
    started = time.monotonic()
    cpu0 = time.process_time()
    for c in conns:
        c.stop = stop
        c.send_next()
    await asyncio.gather(*(c.done for c in conns))
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu0
    return {"cpu": cpu, "ok": sum(c.ok for c in conns), "bad": sum(c.bad for c in conns), "elapsed": elapsed,
            "exhausted": sum(c.i >= len(c.requests) for c in conns), "latencies": [x for c in conns for x in c.latencies]}


def _inbound_child(args: tuple[str, int, str, int, int, float, float]) -> dict[str, Any]:
    return asyncio.run(_inbound_load(*args))


def inbound(url: str, seconds: float, concurrency: int, procs: int, gw_pid: int, profile: Path | None = None, rate_hint: int = 12000, broker_pid: int | None = None) -> dict[str, Any]:
    """`concurrency` keep-alive connections spread over `procs` load processes, each request
    pre-built and pre-signed (unique ids: every one is produced); accepted (202) per second, and
    the gateway's CPU seconds per 1,000 accepted requests (robust when the machine is loaded)."""
    import multiprocessing

    host, port = url.removeprefix("http://").split(":")
    # enough requests per connection for `seconds` at `rate_hint`/s overall
    per_connection = int(seconds * rate_hint / concurrency) + 50
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    run = uuid.uuid4().hex[:6]
    start_at = time.time() + 2.0 + concurrency * per_connection / 50_000  # after every process built its requests
    jobs = [(host, int(port), f"{run}{i}", n, per_connection, start_at, seconds) for i, n in enumerate(shares) if n]
    proc = psutil.Process(gw_pid)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(jobs)) as pool:
        pending = pool.map_async(_inbound_child, jobs)
        time.sleep(max(0.0, start_at - time.time()))
        broker = psutil.Process(broker_pid) if broker_pid else None
        broker_before = broker.cpu_times() if broker else None
        cpu_before = proc.cpu_times()
        threads_before = _thread_cpu(gw_pid)
        spy = _py_spy(gw_pid, seconds, profile)
        parts = pending.get(seconds + 120)
        cpu_after = proc.cpu_times()
        threads_after = _thread_cpu(gw_pid)
        broker_after = broker.cpu_times() if broker else None
    if spy is not None:
        spy.wait(30)
    ok = sum(p["ok"] for p in parts)
    bad = sum(p["bad"] for p in parts)
    elapsed = max(p["elapsed"] for p in parts)
    latencies = sorted(x for p in parts for x in p["latencies"])
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {"concurrency": concurrency, "load_processes": len(jobs), "accepted": ok, "refused": bad, "per_second": round(ok / elapsed),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "gateway_cpu_s": round(cpu, 2), "gateway_cpu_ms_per_request": round(cpu * 1000 / max(1, ok), 3),
            "connections_out_of_requests": sum(p["exhausted"] for p in parts),
            "gateway_cpu_s_by_thread": {name: round(t - threads_before.get(name, 0.0), 2) for name, t in sorted(threads_after.items()) if t - threads_before.get(name, 0.0) >= 0.01},
            "load_cpu_s": round(sum(p["cpu"] for p in parts), 2),
            "broker_cpu_s": round((broker_after.user + broker_after.system) - (broker_before.user + broker_before.system), 2) if broker_after and broker_before else None}


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
    spy = _py_spy(gw_pid, seconds, profile)

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
    ap.add_argument("--load-processes", type=int, default=1, help="inbound: processes the connections are spread over")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rest-records", type=int, default=20000)
    ap.add_argument("--broadcast-connections", type=int, default=100)
    ap.add_argument("--broadcast-rate", type=int, default=100)
    ap.add_argument("--only", choices=["inbound", "rest", "fanout", "broadcast"], action="append")
    ap.add_argument("--linger-ms", type=int, help="the gateway's [gateway] linger_ms (default: the gateway's own)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--profile", type=Path, help="py-spy (PY_SPY=path, PY_SPY_ARGS=more options, e.g. --native) the gateway during inbound and each fan-out: PROFILE.<mode>.txt, collapsed stacks")
    args = ap.parse_args()
    only = set(args.only or ["inbound", "rest", "fanout", "broadcast"])
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_s:
        tmp = Path(tmp_s)
        with BrokerProcess(tmp / "data") as broker:
            gw, url = start_gateway(broker.bootstrap, tmp, args.linger_ms)
            try:
                if "inbound" in only:
                    results["inbound"] = inbound(url, args.seconds, args.concurrency, args.load_processes, gw.pid, args.profile and args.profile.with_suffix(".inbound.txt"), broker_pid=broker.proc.pid)
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
