"""riverbed.streams against Quix Streams on the same broker and input, one process each.

Scenarios (the issue's performance section; small inputs by default):
  a  stateless: JSON filter (amount >= 50) + map to an output topic
  b  tumbling 10-second count per key with a persistent store and its changelog (every update
     emitted)
  c  stream-table join: each record joined with a table of --keys users (riverbed only: the
     script has no Quix Streams version of it)
  r  restore rate: a changelog of --keys records restored into a fresh SQLite store (riverbed only)
  l  end-to-end latency of (a): --latency-rate records/s for --latency-seconds, the send time in
     each record; a consumer of the output reports p50/p99 of receive minus send time (ms)

Each run is a fresh child process (``--child``) that consumes the whole input topic once and
stops itself when it has seen the last input record; it reports records/s and CPU time per
record (process CPU, all threads, from the first record to the end of its final commit).
Quix Streams (PyPI ``quixstreams``) pins an older confluent-kafka, so it usually lives in its
own virtualenv with riverbed installed too: pass that interpreter as ``--quix-python``.

Usage:
  python benchmarks/streams.py [--bootstrap HOST:PORT] [--records 20000] [--keys 1000]
                               [--quix-python /path/to/venv/bin/python] [--scenarios ab]

Without --bootstrap it starts its own ``riverbed serve`` on a free port. Figures mean little on
a loaded machine; the script prints the load average with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BASE_TS = 1_700_000_000_000


def _measure_start(state: dict[str, Any]) -> None:
    if "t0" not in state:
        state["t0"] = time.perf_counter()
        state["cpu0"] = time.process_time()


def child_riverbed(args: argparse.Namespace) -> dict[str, Any]:
    from riverbed.streams import JSON, STRING, StreamsApp, TimeWindows

    state: dict[str, Any] = {"n": 0}
    app = StreamsApp(f"bench-rb-{uuid.uuid4().hex[:6]}", args.bootstrap, state_dir=args.state_dir,
                     commit_interval_ms=1000)

    def seen(_k: Any, _v: Any) -> None:
        _measure_start(state)
        state["n"] += 1
        if state["n"] == args.records:
            app.stop()

    if args.scenario == "c":
        users = app.table(f"{args.input}-users", STRING, JSON, name="users")
        (app.stream(args.input, STRING, JSON).peek(seen)
            .join(users, lambda v, u: {"amount": v["amount"], "tier": u["tier"]})
            .to(args.output, STRING, JSON))
        app.run()
        return {"t1": time.perf_counter(), "cpu1": time.process_time(), **state}
    if args.scenario == "l":  # latency: (a) carrying the producer's send time; a "stop" record ends it
        (app.stream(args.input, STRING, JSON).peek(lambda _k, v: app.stop() if "stop" in v else None)
            .filter(lambda _k, v: v["amount"] >= 50)
            .map_values(lambda v: {"user": v["user"], "double": v["amount"] * 2, "sent": v["sent"]})
            .to(args.output, STRING, JSON))
        app.run()
        return {}
    src = app.stream(args.input, STRING, JSON).peek(seen)
    if args.scenario == "a":
        (src.filter(lambda _k, v: v["amount"] >= 50)
            .map_values(lambda v: {"user": v["user"], "double": v["amount"] * 2})
            .to(args.output, STRING, JSON))
    else:
        (src.group_by_key().windowed_by(TimeWindows.of(10_000)).count(name="counts")
            .to_stream().map(lambda wk, n: (wk.key, {"start": wk.window.start, "count": n}))
            .to(args.output, STRING, JSON))
    app.run()
    return {"t1": time.perf_counter(), "cpu1": time.process_time(), **state}


def child_quix(args: argparse.Namespace) -> dict[str, Any]:
    from datetime import timedelta

    from quixstreams import Application

    state: dict[str, Any] = {"n": 0}
    app = Application(broker_address=args.bootstrap, consumer_group=f"bench-qx-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", state_dir=args.state_dir, commit_interval=1.0, loglevel="WARNING")

    def seen(_v: Any) -> None:
        _measure_start(state)
        state["n"] += 1
        if state["n"] == args.records:
            app.stop()

    sdf = app.dataframe(app.topic(args.input, value_deserializer="json", key_deserializer="str"))
    out = app.topic(args.output, value_serializer="json", key_serializer="str")
    if args.scenario == "l":  # latency (see child_riverbed)
        sdf = sdf.update(lambda v: app.stop() if "stop" in v else None)
        sdf = sdf.filter(lambda v: v["amount"] >= 50).apply(
            lambda v: {"user": v["user"], "double": v["amount"] * 2, "sent": v["sent"]})
        sdf.to_topic(out)
        app.run()
        return {}
    sdf = sdf.update(seen)
    if args.scenario == "a":
        sdf = sdf.filter(lambda v: v["amount"] >= 50).apply(lambda v: {"user": v["user"], "double": v["amount"] * 2})
    else:
        sdf = sdf.tumbling_window(timedelta(seconds=10)).count().current()
    sdf.to_topic(out)
    app.run()
    return {"t1": time.perf_counter(), "cpu1": time.process_time(), **state}


def produce_input(bootstrap: str, topic: str, records: int, keys: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    # no time retention: the records carry 2023 timestamps (BASE_TS), which a broker's retention
    # check would delete mid-run (the app's consumer then skips ahead to the new log start)
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "-1"})]).values():
        fut.result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(records):
        user = f"user-{i % keys}"
        value = json.dumps({"user": user, "amount": i % 100}).encode()
        while True:
            try:
                p.produce(topic, value, user.encode(), timestamp=BASE_TS + i * 10)
                break
            except BufferError:
                p.poll(0.1)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(60):
        raise SystemExit("could not produce the input")


def produce_users(bootstrap: str, topic: str, keys: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})]).values():
        fut.result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(keys):
        p.produce(topic, json.dumps({"tier": i % 3}).encode(), f"user-{i}".encode(), timestamp=BASE_TS - 1)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(60):
        raise SystemExit("could not produce the users")


def restore_rate(bootstrap: str, keys: int) -> dict[str, Any]:
    """Write ``keys`` records to a changelog partition, then time restoring them."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from riverbed.streams.restore import ChangelogPartition, ChangelogReader
    from riverbed.streams.stores import SqliteEngine

    app_id = f"bench-restore-{uuid.uuid4().hex[:6]}"
    topic = f"{app_id}-s-changelog"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})]).values():
        fut.result(30)
    # (a 1,000,000-key changelog: a large local queue, delivery reports served as it goes)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576})
    produce_t0 = time.perf_counter()
    for i in range(keys):
        while True:
            try:
                p.produce(topic, b"%016d" % i, b"key-%d" % i)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(300):
        raise SystemExit("could not produce the changelog")
    produce_s = time.perf_counter() - produce_t0
    tmp = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    try:
        # the runtime's path: a ChangelogReader polled a chunk at a time, as from the poll loop
        engine = SqliteEngine(tmp / "s.sqlite")
        reader = ChangelogReader({"bootstrap.servers": bootstrap, "group.id": app_id}, batch_size=5000)
        cp = ChangelogPartition("s", "0_0", engine, topic, 0, standby=False)
        t0, cpu0 = time.perf_counter(), time.process_time()
        if not reader.add(cp):
            while not cp.done:
                reader.poll(0.2, 0.05)
        n = cp.applied
        secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        reader.close()
        engine.close()
        return {"engine": "riverbed", "scenario": "r", "records": n, "seconds": round(secs, 3),
                "records_per_s": round(n / secs), "cpu_us_per_record": round(cpu / max(n, 1) * 1e6, 1),
                "changelog_produced_in_s": round(produce_s, 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def latency(python: str, engine: str, bootstrap: str, rate: int, seconds: float) -> dict[str, Any]:
    """End-to-end latency of scenario (a): records produced at ``rate`` per second for
    ``seconds``, each carrying its send time (``time.time()``); a consumer of the output topic
    takes receive time minus send time for every output record (the half that passes the
    filter). The app runs in a child process, started and warmed up first (records are sent
    until one comes out), so its start-up and first rebalance are not in the figures."""
    import threading

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-l-{engine}-{uuid.uuid4().hex[:6]}"
    out_topic = topic if engine == "plain" else f"{topic}-out"  # plain: no app, the reader reads the input
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in sorted({topic, out_topic})]).values():
        fut.result(30)
    lat: list[float] = []
    seen_any = threading.Event()
    done = threading.Event()
    measuring = threading.Event()

    def consume() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "auto.offset.reset": "earliest",
                      "fetch.wait.max.ms": 10, "enable.auto.commit": False})
        c.subscribe([out_topic])
        try:
            while not done.is_set():
                first = c.poll(0.05)  # (consume() with a timeout would wait for a whole batch)
                for m in [] if first is None else [first, *c.consume(100, 0)]:
                    if m.error() is not None:
                        continue
                    now = time.time()
                    v = json.loads(m.value() or b"{}")
                    if engine == "plain" and v["amount"] < 50:  # (what the app's filter drops)
                        continue
                    seen_any.set()
                    if measuring.is_set() and v.get("sent", 0) > 0:
                        lat.append((now - v["sent"]) * 1000)
        finally:
            c.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    state_dir = tempfile.mkdtemp(prefix=f"bench-{engine}-")
    cmd = [python, __file__, "--child", engine, "--scenario", "l", "--bootstrap", bootstrap, "--input", topic,
           "--output", out_topic, "--records", "0", "--state-dir", state_dir]
    if engine == "plain":
        cmd = [python, "-c", "import sys; sys.stdin.read()"]  # (a stand-in child that ends when told)
    err_path = Path(state_dir) / "stderr"
    with open(err_path, "w") as err_file:  # (a file, not a pipe: a chatty child never blocks on it)
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file, text=True)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    try:
        deadline = time.monotonic() + 60
        while not seen_any.is_set():  # warm-up: -1 as the send time (not measured)
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit(f"{engine} latency: no output within 60 s:\n{err_path.read_text()[-3000:]}")
            p.produce(topic, json.dumps({"user": "warm", "amount": 99, "sent": -1}).encode(), b"warm")
            p.poll(0.1)
        time.sleep(1.0)  # (the warm-up records' outputs drained)
        measuring.set()
        n = int(rate * seconds)
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            user = f"user-{i % 1000}"
            p.produce(topic, json.dumps({"user": user, "amount": i % 100, "sent": time.time()}).encode(), user.encode())
            p.poll(0)
        p.flush(30)
        expected = sum(1 for i in range(n) if i % 100 >= 50)
        deadline = time.monotonic() + 30
        while len(lat) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        p.produce(topic, json.dumps({"stop": True, "amount": 0, "user": "stop"}).encode(), b"stop")
        p.flush(30)
        if child.stdin is not None:
            child.stdin.close()
        child.wait(60)
    finally:
        done.set()
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.join(10)
        shutil.rmtree(state_dir, ignore_errors=True)
    got = sorted(lat)
    if not got:
        raise SystemExit(f"{engine} latency: no output measured")

    def pct(q: float) -> float:
        return round(got[min(int(q * len(got)), len(got) - 1)], 2)

    return {"engine": engine, "scenario": "l", "rate": rate, "outputs": len(got), "expected": expected,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(got[-1], 2)}


def run_child(python: str, engine: str, scenario: str, bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    state_dir = tempfile.mkdtemp(prefix=f"bench-{engine}-")
    try:
        cmd = [python, __file__, "--child", engine, "--scenario", scenario, "--bootstrap", bootstrap,
               "--input", topic, "--output", f"{topic}-{engine}-out", "--records", str(records), "--state-dir", state_dir]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        if r.returncode != 0:
            raise SystemExit(f"{engine} {scenario} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        secs = res["t1"] - res["t0"]
        return {"engine": engine, "scenario": scenario, "records": res["n"], "seconds": round(secs, 3),
                "records_per_s": round(res["n"] / secs), "cpu_us_per_record": round((res["cpu1"] - res["cpu0"]) / res["n"] * 1e6, 1)}
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--scenarios", default="ab")
    ap.add_argument("--quix-python", help="an interpreter with quixstreams (and riverbed) installed")
    ap.add_argument("--latency-rate", type=int, default=1000, help="scenario l: records per second")
    ap.add_argument("--latency-seconds", type=float, default=10.0, help="scenario l: how long to produce")
    ap.add_argument("--child", choices=["riverbed", "quix"], help=argparse.SUPPRESS)
    ap.add_argument("--scenario", default="a", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = child_riverbed(args) if args.child == "riverbed" else child_quix(args)
        print(json.dumps(res))
        return

    broker = None
    if not args.bootstrap:
        from riverbed.testing import BrokerProcess

        data = Path(tempfile.mkdtemp(prefix="bench-streams-")) / "data"
        data.mkdir()
        broker = BrokerProcess(data, extra=["--set", "group.initial.rebalance.delay.ms=0"]).start()
        args.bootstrap = broker.bootstrap
    try:
        engines = [("riverbed", sys.executable)]
        if args.quix_python:
            engines.append(("quix", args.quix_python))
        else:
            try:
                import quixstreams  # noqa: F401

                engines.append(("quix", sys.executable))
            except ImportError:
                print("quixstreams not importable and no --quix-python: riverbed only", file=sys.stderr)
        print(f"# {args.records} records, {args.keys} keys, load average {os.getloadavg()}", flush=True)
        for scenario in args.scenarios:
            if scenario == "l":  # (plain: a consumer of the input itself, the broker's and clients' share)
                for engine, python in [("plain", sys.executable), *engines]:
                    print(json.dumps(latency(python, engine, args.bootstrap, args.latency_rate, args.latency_seconds)),
                          flush=True)
                continue
            if scenario == "r":
                print(json.dumps(restore_rate(args.bootstrap, args.keys)), flush=True)
                continue
            topic = f"bench-{scenario}-{uuid.uuid4().hex[:6]}"
            if scenario == "c":
                produce_users(args.bootstrap, f"{topic}-users", args.keys)
            produce_input(args.bootstrap, topic, args.records, args.keys)
            for engine, python in engines:
                if scenario == "c" and engine == "quix":
                    continue
                print(json.dumps(run_child(python, engine, scenario, args.bootstrap, topic, args.records)), flush=True)
    finally:
        if broker is not None:
            broker.terminate()


if __name__ == "__main__":
    main()
