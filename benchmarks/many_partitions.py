"""Many partitions (issue 9, item 2), measured from outside: ``riverbed serve`` in a child process
and real Kafka clients over TCP.

    .venv/bin/python benchmarks/many_partitions.py [--topics 100] [--partitions 100] [--idle 10]
        [--nofile 1024] [--src OLD/src] [--label NAME]

Phases (each figure is wall time seen by the client, or the broker's own CPU-seconds / fds /
RSS from /proc; the machine may be shared, so CPU is read from the process, not wall time):

* ``create_s``: CreateTopics of ``--topics`` topics x ``--partitions`` partitions (one request
  per topic, all in flight at once, as AdminClient sends them) until every future is done;
* ``metadata_ms``: a Metadata request for every topic (librdkafka ``list_topics``), median of 5;
* ``produce_cold_s`` / ``produce_warm_s``: one 100 B record to every partition (acks=all, one
  confluent-kafka producer, linger 5 ms) until ``flush()`` returns; cold includes the
  producer's first metadata requests, warm is a second round with the same producer (with
  the broker's and this process's CPU-seconds during it: which side is the bottleneck);
  ``produce_kafka_python_s``: a third round from a kafka-python producer, which (like the
  Java client) sends the batches of many partitions in one ProduceRequest where librdkafka
  sends one request per partition (metadata fetched first, not measured);
  ``produce_wire_s``: a fourth round sent as the Java client would (a few requests of at
  most 1 MiB, each holding many partitions), built beforehand with riverbed's own codec so
  that the load generator costs nothing while measured;
* ``fds`` and ``rss_mb`` of the broker after producing;
* ``idle_fetch_cpu``: share of one core the broker spends while one consumer group member,
  subscribed to every topic and caught up, sits idle for ``--idle`` seconds: a confluent-kafka
  member (librdkafka sends full fetches); ``idle_fetch_cpu_sessions``: the same with a
  kafka-python member (incremental fetch sessions, KIP-227, as the Java client);
* ``restart_s``: SIGTERM (clean shutdown), then process start -> first Metadata answer;
  ``restart_unclean_s`` the same after SIGKILL; ``fds_after_restart``;
* ``records_after_restart``: every record is still there (sum of high watermarks).

``--nofile`` runs the broker under that RLIMIT_NOFILE (``ulimit -n``). ``--src`` runs an older
riverbed (the "before" figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.testing import free_port

PREFIX = "mp"


def start_broker(
    data_dir: Path, port: int, src: str | None, nofile: int | None
) -> tuple[subprocess.Popen[bytes], float]:
    """The broker process and the seconds from Popen to its first Metadata answer."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [
        sys.executable,
        "-m",
        "riverbed",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
    ]
    cmd += ["--no-registry", "--no-metrics", "--no-console"]

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = open(data_dir.parent / "broker.log", "ab")  # noqa: SIM115 - owned by the child
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, preexec_fn=limit)
    log.close()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    deadline = started + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited with {proc.returncode} (see {data_dir.parent / 'broker.log'})"
            )
        try:
            admin.list_topics(timeout=0.5)
            return proc, time.monotonic() - started
        except Exception:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("broker did not start")


def cpu(pid: int) -> float:
    """CPU-seconds (user + system, all threads) of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def topics(n: int) -> list[str]:
    return [f"{PREFIX}-{i:03d}" for i in range(n)]


def produce_round(producer: Producer, names: list[str], partitions: int) -> float:
    errors: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    started = time.monotonic()
    for name in names:
        for p in range(partitions):
            while True:
                try:
                    producer.produce(name, b"x" * 100, partition=p, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(120)
    elapsed = time.monotonic() - started
    if left or errors:
        raise RuntimeError(f"{left} undelivered, errors: {errors[:3]}")
    return elapsed


def produce_round_kafka_python(
    bootstrap: str, names: list[str], partitions: int, pid: int
) -> tuple[float, float, float]:
    """One record to every partition with a kafka-python producer (like the Java client, it
    puts the batches of many partitions in one ProduceRequest; librdkafka sends one request
    per partition): seconds of the round, the broker's and this process's CPU-seconds in it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for name in names:  # metadata of every topic first (not measured)
            producer.partitions_for(name)
        t0, c0, b0 = time.monotonic(), time.process_time(), cpu(pid)
        futures = [
            producer.send(name, b"x" * 100, partition=p)
            for name in names
            for p in range(partitions)
        ]
        producer.flush(120)
        elapsed, client, broker = time.monotonic() - t0, time.process_time() - c0, cpu(pid) - b0
        for fut in futures:
            fut.get(0)  # raises if a record was not acknowledged
        return elapsed, broker, client
    finally:
        producer.close()


def produce_round_wire(
    bootstrap: str, names: list[str], partitions: int, pid: int
) -> tuple[float, float]:
    """One record to every partition in as few ProduceRequests (v7, acks=-1) as the Java
    client would send (at most 1 MiB each, its max.request.size), built beforehand with
    riverbed's codec and pipelined on one connection: a load generator that costs nothing
    while measured. Seconds from the first byte sent to the last answer, broker CPU-seconds."""
    from riverbed.protocol.messages.produce import ProduceRequest, ProduceResponse
    from riverbed.protocol.primitives import Reader, Writer
    from riverbed.protocol.records.records import build_batch

    batch = bytes(build_batch([(None, b"x" * 100)]))
    requests: list[ProduceRequest] = []
    size = 1 << 20
    for name in names:
        if size + partitions * (len(batch) + 8) + len(name) > (1 << 20):
            requests.append(ProduceRequest(acks=-1, timeout_ms=60_000, topic_data=[]))
            size = 0
        data = [
            ProduceRequest.PartitionProduceData(index=p, records=batch) for p in range(partitions)
        ]
        requests[-1].topic_data.append(
            ProduceRequest.TopicProduceData(name=name, partition_data=data)
        )
        size += partitions * (len(batch) + 8) + len(name)
    frames = []
    for i, req in enumerate(requests):
        w = Writer()  # request header v1: api key, version, correlation id, client id
        w.int16(ProduceRequest.API_KEY)
        w.int16(7)
        w.int32(i)
        w.nullable_string("mp-wire", False)
        payload = w.getvalue() + req.encode(7)
        frames.append(struct.pack(">i", len(payload)) + payload)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        b0, t0 = cpu(pid), time.monotonic()
        for frame in frames:
            sock.sendall(frame)
        answers = []
        for _ in frames:
            (n,) = struct.unpack(">i", _exactly(sock, 4))
            answers.append(_exactly(sock, n))
        elapsed, broker = time.monotonic() - t0, cpu(pid) - b0
    for answer in answers:
        r = Reader(answer)
        r.int32()  # correlation id
        resp = ProduceResponse.read(r, 7)
        bad = [p.error_code for t in resp.responses for p in t.partition_responses if p.error_code]
        if bad:
            raise RuntimeError(f"{len(bad)} partitions answered errors, e.g. {bad[0]}")
    return elapsed, broker


def _exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk
    return bytes(buf)


def high_watermarks(bootstrap: str, names: list[str], partitions: int) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "mp-check", "enable.auto.commit": False}
    )
    try:
        total = 0
        for name in names:
            for p in range(partitions):
                total += consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)[1]
        return total
    finally:
        consumer.close()


def idle_group_cpu_kafka_python(
    bootstrap: str, proc: subprocess.Popen[bytes], total: int, seconds: float
) -> float:
    """As :func:`idle_group_cpu` with a kafka-python member (it uses incremental fetch
    sessions, KIP-227, like the Java client; librdkafka does not)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="mp-idle-kp",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    consumer.subscribe(pattern=f"^{PREFIX}-.*")
    try:
        deadline = time.monotonic() + 180
        while len(consumer.assignment()) < total and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        if len(consumer.assignment()) < total:
            raise RuntimeError(f"only {len(consumer.assignment())} of {total} partitions assigned")
        warm = time.monotonic() + 5
        while time.monotonic() < warm:
            consumer.poll(timeout_ms=200)
        c0 = cpu(proc.pid)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if any(consumer.poll(timeout_ms=200).values()):
                raise RuntimeError("an idle consumer received a record")
        return (cpu(proc.pid) - c0) / seconds
    finally:
        consumer.close()


def idle_group_cpu(
    bootstrap: str, proc: subprocess.Popen[bytes], total: int, seconds: float
) -> float:
    """Share of a core the broker uses while a caught-up group member of every partition
    idles (a confluent-kafka member: librdkafka sends full fetches, no fetch sessions)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "mp-idle",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    assigned: list[int] = []
    consumer.subscribe([f"^{PREFIX}-.*"], on_assign=lambda _c, parts: assigned.append(len(parts)))
    try:
        deadline = time.monotonic() + 120
        while sum(assigned) < total and time.monotonic() < deadline:
            consumer.poll(0.2)
        if sum(assigned) < total:
            raise RuntimeError(f"only {sum(assigned)} of {total} partitions assigned")
        warm = time.monotonic() + 5  # offsets looked up, first fetches answered (not measured)
        while time.monotonic() < warm:
            consumer.poll(0.2)
        c0 = cpu(proc.pid)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                raise RuntimeError("an idle consumer received a record")
        return (cpu(proc.pid) - c0) / seconds
    finally:
        consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=100, help="partitions per topic")
    ap.add_argument(
        "--idle",
        type=float,
        default=10.0,
        help="seconds of idle consumer-group CPU measurement (0: skip)",
    )
    ap.add_argument(
        "--nofile", type=int, default=None, help="RLIMIT_NOFILE of the broker (ulimit -n)"
    )
    ap.add_argument(
        "--src", default=None, help="run the broker from this src directory (an older riverbed)"
    )
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    names = topics(args.topics)
    total = args.topics * args.partitions
    result: dict[str, Any] = {
        "label": args.label,
        "topics": args.topics,
        "partitions": total,
        "nofile": args.nofile,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        port = free_port()
        bootstrap = f"127.0.0.1:{port}"
        broker, result["start_empty_s"] = start_broker(data, port, args.src, args.nofile)
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            started = time.monotonic()
            futures = admin.create_topics(
                [NewTopic(n, num_partitions=args.partitions, replication_factor=1) for n in names],
                request_timeout=300,
            )
            for fut in futures.values():
                fut.result(300)
            result["create_s"] = round(time.monotonic() - started, 3)
            times = []
            for _ in range(5):
                t0 = time.monotonic()
                md = admin.list_topics(timeout=30)
                times.append(time.monotonic() - t0)
            assert sum(len(md.topics[n].partitions) for n in names) == total
            result["metadata_ms"] = round(statistics.median(times) * 1000, 1)
            producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
            result["produce_cold_s"] = round(produce_round(producer, names, args.partitions), 3)
            c0, t0 = cpu(broker.pid), time.process_time()
            result["produce_warm_s"] = round(produce_round(producer, names, args.partitions), 3)
            result["produce_warm_broker_cpu_s"] = round(cpu(broker.pid) - c0, 3)
            result["produce_warm_client_cpu_s"] = round(time.process_time() - t0, 3)
            elapsed, broker_cpu, client = produce_round_kafka_python(
                bootstrap, names, args.partitions, broker.pid
            )
            result["produce_kafka_python_s"] = round(elapsed, 3)
            result["produce_kafka_python_broker_cpu_s"] = round(broker_cpu, 3)
            result["produce_kafka_python_client_cpu_s"] = round(client, 3)
            elapsed, broker_cpu = produce_round_wire(bootstrap, names, args.partitions, broker.pid)
            result["produce_wire_s"] = round(elapsed, 3)
            result["produce_wire_broker_cpu_s"] = round(broker_cpu, 3)
            result["fds"] = fds(broker.pid)
            result["rss_mb"] = rss_mb(broker.pid)
            if args.idle > 0:
                result["idle_fetch_cpu"] = round(
                    idle_group_cpu(bootstrap, broker, total, args.idle), 4
                )
                result["idle_fetch_cpu_sessions"] = round(
                    idle_group_cpu_kafka_python(bootstrap, broker, total, args.idle), 4
                )
            broker.send_signal(signal.SIGTERM)
            broker.wait(120)
            broker, elapsed = start_broker(data, port, args.src, args.nofile)
            result["restart_s"] = round(elapsed, 3)
            result["fds_after_restart"] = fds(broker.pid)
            result["rss_mb_after_restart"] = rss_mb(broker.pid)
            broker.kill()
            broker.wait(30)
            broker, elapsed = start_broker(data, port, args.src, args.nofile)
            result["restart_unclean_s"] = round(elapsed, 3)
            result["records_after_restart"] = high_watermarks(bootstrap, names, args.partitions)
            if result["records_after_restart"] != 4 * total:
                raise RuntimeError(
                    f"{result['records_after_restart']} records after restart, expected {4 * total}"
                )
        except Exception:
            log = (data.parent / "broker.log").read_text(errors="replace").splitlines()
            print("\n".join(["broker log (last lines):", *log[-15:]]), file=sys.stderr)
            raise
        finally:
            if broker.poll() is None:
                broker.terminate()
                broker.wait(60)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
