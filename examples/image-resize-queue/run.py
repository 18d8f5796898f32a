"""The lecture's background-job queue, on the log: an image-resize queue served by a share
group (KIP-932), in one command:

    .venv/bin/python examples/image-resize-queue/run.py      # starts its own broker

An upload service produces 30 resize jobs (and one poison job whose image is corrupt) to the
one-partition topic `image-jobs`. Three workers, each a confluent-kafka ShareConsumer in the
share group `resizers`, take jobs from the same partition: each job goes to one worker, is
acknowledged when done (ACCEPT), given back when the worker fails (RELEASE: redelivered, with
its delivery count), or refused (REJECT). The group's dead-letter topic `dlq.image-jobs`
(KIP-1191's `errors.deadletterqueue.topic.name`) receives the rejected poison job and the job
that failed as many times as `share.delivery.count.limit` allows, with headers saying why.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import AcknowledgeType, Consumer, Message, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from riverbed.testing import BrokerProcess

TOPIC, GROUP, DLQ = "image-jobs", "resizers", "dlq.image-jobs"
JOBS = 30


class CorruptImage(Exception):
    pass


def make_image(seed: int, width: int = 64, height: int = 48) -> bytes:
    """A small grey-scale PGM image (the "upload")."""
    pixels = bytes((x * 3 + y * 5 + seed) % 256 for y in range(height) for x in range(width))
    return f"P5 {width} {height} 255\n".encode() + pixels


def resize(image: bytes, width: int) -> bytes:
    """Nearest-neighbour downscale of a PGM image to ``width`` pixels wide (the job's work)."""
    try:
        header, pixels = image.split(b"\n", 1)
        magic, w, h, _ = header.split()
        if magic != b"P5" or len(pixels) != int(w) * int(h):
            raise ValueError("not a PGM image")
    except ValueError as exc:
        raise CorruptImage(str(exc)) from exc
    w, h = int(w), int(h)
    height = max(1, h * width // w)
    out = bytes(
        pixels[(y * h // height) * w + (x * w // width)]
        for y in range(height)
        for x in range(width)
    )
    return f"P5 {width} {height} 255\n".encode() + out


def setup(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(10)
    # the dead-letter topic: its admin allows share groups to write to it (KIP-1191)
    admin.create_topics(
        [NewTopic(DLQ, 1, 1, config={"errors.deadletterqueue.group.enable": "true"})]
    )[DLQ].result(10)
    configs = {
        "share.auto.offset.reset": "earliest",
        "share.delivery.count.limit": "3",
        "share.record.lock.duration.ms": "5000",
        "errors.deadletterqueue.topic.name": DLQ,
    }
    res = ConfigResource(
        ResourceType.GROUP,
        GROUP,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ],
    )
    admin.incremental_alter_configs([res])[res].result(10)


def upload(bootstrap: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(JOBS):
        job = {"image": f"photo-{i}.pgm", "width": 16, "data": make_image(i).hex()}
        if i == 20:  # its storage is flaky: every attempt to resize it fails
            job["image"] = "flaky-storage.pgm"
        p.produce(TOPIC, key=job["image"].encode(), value=json.dumps(job).encode())
    p.produce(
        TOPIC,
        key=b"corrupt.pgm",
        value=json.dumps({"image": "corrupt.pgm", "width": 16, "data": b"GIF89a".hex()}).encode(),
    )
    p.flush(10)


class ResizeWorker(threading.Thread):
    def __init__(
        self,
        name: str,
        bootstrap: str,
        done: dict[str, str],
        lock: threading.Lock,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.consumer = ShareConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "share.acknowledgement.mode": "explicit",
                "max.poll.records": 4,
            }
        )
        self.consumer.subscribe([TOPIC])
        self.done, self.lock, self.stop = done, lock, stop
        self.polled = threading.Event()  # set once the worker has joined and polled

    def handle(self, m: Message) -> AcknowledgeType:
        job = json.loads(m.value() or b"{}")
        if job["image"] == "flaky-storage.pgm":
            print(
                f"{self.name}: {job['image']} failed (attempt {m.delivery_count()}), giving it back"
            )
            return AcknowledgeType.RELEASE
        try:
            thumb = resize(bytes.fromhex(job["data"]), job["width"])
        except CorruptImage as exc:
            print(f"{self.name}: {job['image']} is corrupt ({exc}), rejecting it")
            return AcknowledgeType.REJECT
        with self.lock:
            self.done[job["image"]] = self.name
        print(f"{self.name}: resized {job['image']} to {len(thumb)} bytes")
        time.sleep(0.05)  # the rest of the work
        return AcknowledgeType.ACCEPT

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for m in self.consumer.poll(0.2):
                    if m.error() is None:
                        self.consumer.acknowledge(m, self.handle(m))
                self.consumer.commit_async()
                self.polled.set()
        finally:
            self.consumer.close()


def read_dead_letters(bootstrap: str, n: int, timeout: float = 30) -> list[Message]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "dlq-inspector",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([DLQ])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += [m for m in c.consume(10, 0.3) if m.error() is None]
    c.close()
    return out


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="image-resize-") as tmp,
        BrokerProcess(Path(tmp) / "data") as broker,
    ):
        bootstrap = broker.bootstrap
        setup(bootstrap)
        done: dict[str, str] = {}
        lock, stop = threading.Lock(), threading.Event()
        workers = [ResizeWorker(f"worker-{i}", bootstrap, done, lock, stop) for i in (1, 2, 3)]
        for w in workers:
            w.start()
        for w in workers:  # the workers are in the group before the jobs arrive
            w.polled.wait(30)
        time.sleep(0.5)  # their first heartbeats' assignments
        upload(bootstrap)
        letters = read_dead_letters(bootstrap, 2)
        deadline = time.monotonic() + 30
        while len(done) < JOBS - 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for w in workers:
            w.join(15)
        per_worker = {w.name: sum(1 for v in done.values() if v == w.name) for w in workers}
        print(
            f"resized {len(done)} images: " + ", ".join(f"{k} {v}" for k, v in per_worker.items())
        )
        for m in sorted(letters, key=lambda m: m.offset()):
            h = {k: (v or b"").decode() for k, v in m.headers() or []}
            print(
                f"dead letter: {(m.key() or b'').decode()} from {h['__dlq.errors.topic']}-{h['__dlq.errors.partition']}@{h['__dlq.errors.offset']} ({h['__dlq.errors.reason']}, delivery count {h['__dlq.errors.delivery.count']})"
            )
        ok = len(done) == JOBS - 1 and len(letters) == 2 and all(per_worker.values())
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
