"""The lecture's recommendation engine: clickstream -> per-user windowed interest counts ->
Redis, read by a small web endpoint in a few milliseconds.

    python examples/recommendations/run.py          # starts its own `riverbed serve` and redis-server
    python examples/recommendations/run.py --bootstrap HOST:PORT --redis HOST:PORT

A riverbed.streams app counts page views per (user, category) in tumbling 60-second windows
(every update emitted) and writes the counts of each user's latest window to the Redis hash
``interest:<user>``. A web endpoint ``GET /recommendations/<user>`` reads that hash and answers
with the user's interests, most viewed first. The script produces a fixed clickstream (user 123
looks at 5 dog-food pages in 60 seconds), waits until Redis has every count, queries the
endpoint and prints its JSON answer and how long it took.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.streams import (
    JSON,
    STRING,
    Processor,
    ProcessorContext,
    Record,
    StreamsApp,
    TimeWindows,
)

BASE = 1_700_000_040_000  # event time of the first click (a multiple of 60 s)
# (seconds after BASE, user, category)
CLICKS = [(0, "123", "dog-food"), (8, "123", "dog-food"), (15, "123", "cat-toys"), (22, "123", "dog-food"),
          (31, "123", "dog-food"), (47, "123", "dog-food"), (50, "7", "garden"), (52, "7", "garden"),
          (58, "7", "dog-food")]


class Redis:
    """A minimal RESP client (one connection, one command at a time)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.f = self.sock.makefile("rb")
        self.lock = threading.Lock()

    def cmd(self, *args: Any) -> Any:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        frame = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with self.lock:
            self.sock.sendall(frame)
            return self._read()

    def _read(self) -> Any:
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def close(self) -> None:
        self.sock.close()


class ToRedis(Processor):
    """Writes each windowed count to ``interest:<user>``: ``<category>`` -> count, and
    ``<category>@window`` -> the window's start (a newer window replaces an older one)."""

    def __init__(self, redis_addr: tuple[str, int]) -> None:
        self.addr = redis_addr

    def init(self, ctx: ProcessorContext) -> None:
        self.redis = Redis(*self.addr)

    def process(self, record: Record) -> None:
        user, category = record.key.key.split("|", 1)
        start = record.key.window.start
        field = f"{category}@window"
        known = self.redis.cmd("HGET", f"interest:{user}", field)
        if known is None or int(known) <= start:
            self.redis.cmd("HSET", f"interest:{user}", category, record.value, field, start)

    def close(self) -> None:
        self.redis.close()


def build(app_id: str, bootstrap: str, state_dir: str, redis_addr: tuple[str, int]) -> StreamsApp:
    app = StreamsApp(app_id, bootstrap, state_dir=state_dir, commit_interval_ms=500)
    (app.stream("clicks", STRING, JSON)
        .group_by(lambda user, click: f"{user}|{click['category']}", key_serde=STRING)
        .windowed_by(TimeWindows.of(60_000))
        .count(name="interest")
        .to_stream()
        .process(lambda: ToRedis(redis_addr)))
    return app


def serve_recommendations(redis_addr: tuple[str, int]) -> ThreadingHTTPServer:
    redis = Redis(*redis_addr)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 2 or parts[0] != "recommendations":
                self.send_error(404)
                return
            raw = redis.cmd("HGETALL", f"interest:{parts[1]}") or []
            fields = {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}
            interests = sorted(((c, int(v)) for c, v in fields.items() if not c.endswith("@window")),
                               key=lambda cv: (-cv[1], cv[0]))
            body = json.dumps({"user": parts[1], "interests": [{"category": c, "views": n} for c, n in interests],
                               "recommend": interests[0][0] if interests else None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def scenario(bootstrap: str, redis_addr: tuple[str, int]) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic("clicks", 1, 1)]).values():
        try:
            fut.result(30)
        except Exception as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    p = Producer({"bootstrap.servers": bootstrap})
    for sec, user, category in CLICKS:
        p.produce("clicks", json.dumps({"category": category}).encode(), user.encode(), timestamp=BASE + sec * 1000)
    if p.flush(30):
        raise SystemExit("could not produce the clicks")
    expected: dict[tuple[str, str], int] = {}
    for _s, user, category in CLICKS:
        expected[(user, category)] = expected.get((user, category), 0) + 1

    app = build(f"recommendations-{uuid.uuid4().hex[:8]}", bootstrap, tempfile.mkdtemp(prefix="recs-state-"), redis_addr)
    worker = threading.Thread(target=app.run, daemon=True)
    worker.start()
    redis = Redis(*redis_addr)
    deadline = time.monotonic() + 120
    try:
        while True:
            counts = {(u, c): redis.cmd("HGET", f"interest:{u}", c) for u, c in expected}
            if all(v is not None and int(v) == expected[k] for k, v in counts.items()):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for the counts in Redis: {counts}")
            if not worker.is_alive():
                raise SystemExit("the streams app stopped")
            time.sleep(0.1)
    finally:
        app.stop()
        worker.join(60)
        redis.close()
    server = serve_recommendations(redis_addr)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/recommendations/123"
        urlopen(url).read()  # warm up the connection path
        t0 = time.perf_counter()
        answer = json.loads(urlopen(url).read())
        answer["latency_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    finally:
        server.shutdown()
    return answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], tuple[str, int], Path]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed; pass --redis HOST:PORT")
    port, workdir = free_port(), Path(tempfile.mkdtemp(prefix="recs-redis-"))
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            Redis("127.0.0.1", port).close()
            return proc, ("127.0.0.1", port), workdir
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="a running cluster; default: start `riverbed serve` on a free port")
    ap.add_argument("--redis", help="HOST:PORT of a Redis; default: start redis-server on a free port")
    args = ap.parse_args()
    cleanup: list[Any] = []
    try:
        if args.redis:
            host, _, port = args.redis.rpartition(":")
            redis_addr = (host or "127.0.0.1", int(port))
        else:
            proc, redis_addr, workdir = start_redis()
            cleanup.append(lambda: (proc.terminate(), proc.wait(10), shutil.rmtree(workdir, ignore_errors=True)))
        bootstrap = args.bootstrap
        if not bootstrap:
            from riverbed.testing import BrokerProcess

            data = Path(tempfile.mkdtemp(prefix="recs-broker-")) / "data"
            data.mkdir()
            broker = BrokerProcess(data).start()
            cleanup.append(broker.terminate)
            bootstrap = broker.bootstrap
        print(json.dumps(scenario(bootstrap, redis_addr)))
        sys.stdout.flush()
    finally:
        for fn in reversed(cleanup):
            fn()


if __name__ == "__main__":
    main()
