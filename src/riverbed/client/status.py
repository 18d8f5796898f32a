"""Services that "report in": a small status record per long-running toolkit service, published
to a compacted topic through the Kafka client, and read back by the console.

Design: docs/adr/0015-services-report-in.md. A record's key is ``kind/name/instance`` (UTF-8),
its value one JSON object::

    {"kind": "streams", "name": "word-count", "instance": "host:1234", "host": "host",
     "pid": 1234, "state": "RUNNING", "started_at": 1765100000000, "heartbeat_at": 1765100010000,
     "interval_s": 10.0, "figures": {"tasks": 4, "lag": 0}, "metrics_url": "http://...", "version": 1}

(times in milliseconds since the epoch, as Kafka's record timestamps). A reporter publishes
every ``interval_s`` seconds and at once when a service's state changes; a clean stop writes a
tombstone (null value) for each of its keys, so the service leaves the list; a crashed one stays
until its heartbeat is old enough for readers to call it stale, then to forget it.

Reporting never stops a service: a topic that cannot be created or written is logged (once)
and retried at the next heartbeat.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from .factories import ensure_topics

log = logging.getLogger("riverbed.status")

TOPIC = "_riverbed_services"
DEFAULT_INTERVAL_S = 10.0
# compacted, and old segments deleted after a week: crashed services' last records age out
TOPIC_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(7 * 24 * 3600 * 1000)}
VERSION = 1
# a reader ignores larger values (figures are meant to be a few numbers); with MAX_ENTRIES,
# what a reader keeps stays under 80 MB whatever is written to the topic
MAX_VALUE_BYTES = 16 * 1024
MAX_ENTRIES = 5_000


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Status:
    """One service's state as its owner reports it (``figures``: a few numbers or short strings)."""

    kind: str
    name: str
    state: str
    figures: dict[str, Any] = field(default_factory=dict)
    metrics_url: str | None = None


def status_key(kind: str, name: str, instance: str) -> str:
    return f"{kind}/{name}/{instance}"


class StatusReporter:
    """Publishes what ``source()`` returns (a list of :class:`Status`, read on the reporter's
    thread) every ``interval_s``, and within ``CHECK_S`` of a state change. ``config``: the
    librdkafka settings of the cluster (``bootstrap.servers``, security)."""

    CHECK_S = 0.5

    def __init__(
        self,
        config: dict[str, Any],
        source: Callable[[], list[Status]],
        *,
        instance: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        topic: str = TOPIC,
        replication_factor: int = -1,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the status interval must be positive")
        self.config = dict(config)
        self.source = source
        self.instance = instance or default_instance()
        self.host = socket.gethostname()
        self.interval_s = interval_s
        self.topic = topic
        self.replication_factor = replication_factor
        self.started_at = int(time.time() * 1000)
        self.published = 0  # records written (acknowledged)
        self._states: dict[str, str] = {}  # key -> state last published
        self._producer: Producer | None = None
        self._topic_ready = False
        self._warned = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> StatusReporter:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Publish now (a state change the caller knows of)."""
        self._wake.set()

    def stop(self, clean: bool = True, timeout: float = 3.0) -> None:
        """Stop; with ``clean``, write a tombstone for every key published (the service leaves
        the list), else publish the last state once more (a failed service stays, as failed)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + 5)
            self._thread = None
        try:
            if clean:
                for key in list(self._states):
                    self._send(key, None)
                self._states.clear()
            elif self._producer is not None:
                self.publish()
        except Exception as e:
            self._warn("status report failed: %s", e)
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None  # (librdkafka's client goes with the last reference)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            try:
                current = self._read()
                changed = {k: s.state for k, s in current.items()} != self._states
                if changed or time.monotonic() - last >= self.interval_s:
                    self.publish(current)
                    last = time.monotonic()
            except Exception as e:  # never let reporting take the service down
                self._warn("status report failed: %s", e)
            self._wake.wait(min(self.CHECK_S, self.interval_s))
            self._wake.clear()

    def _read(self) -> dict[str, Status]:
        return {status_key(s.kind, s.name, self.instance): s for s in self.source()}

    def publish(self, current: dict[str, Status] | None = None) -> None:
        """Write every service's record now (and tombstones for keys no longer reported)."""
        if current is None:
            current = self._read()
        if not self._topic_ready:
            self._ensure_topic()
        now = int(time.time() * 1000)
        for key, s in current.items():
            value = {
                "kind": s.kind,
                "name": s.name,
                "instance": self.instance,
                "host": self.host,
                "pid": os.getpid(),
                "state": s.state,
                "started_at": self.started_at,
                "heartbeat_at": now,
                "interval_s": self.interval_s,
                "figures": s.figures,
                "metrics_url": s.metrics_url,
                "version": VERSION,
            }
            self._send(key, json.dumps(value, default=str, separators=(",", ":")).encode())
        for key in set(self._states) - set(current):
            self._send(key, None)
        self._states = {k: s.state for k, s in current.items()}
        assert self._producer is not None
        self._producer.poll(0)

    def _ensure_topic(self) -> None:
        try:
            ensure_topics(
                AdminClient(self.config),
                {self.topic: (1, TOPIC_CONFIG)},
                self.replication_factor,
                timeout=10,
            )
        except KafkaException as e:
            # (no right to create topics: an operator may have made it; writing will tell)
            self._warn("cannot create the status topic %s: %s", self.topic, e)
        self._topic_ready = True

    def _send(self, key: str, value: bytes | None) -> None:
        if self._producer is None:
            self._producer = Producer(
                {
                    **self.config,
                    "linger.ms": 50,
                    "acks": "all",
                    "message.timeout.ms": max(int(self.interval_s * 3000), 30_000),
                }
            )
        try:
            self._producer.produce(self.topic, value, key.encode(), on_delivery=self._delivered)
        except BufferError:
            self._warn("status records are not being delivered (the producer queue is full)")

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._warn("status record to %s not delivered: %s", self.topic, err)
        else:
            self.published += 1
            self._warned = False

    def _warn(self, fmt: str, *args: Any) -> None:
        if not self._warned:
            log.warning(fmt + " (further failures are logged at DEBUG until one succeeds)", *args)
            self._warned = True
        else:
            log.debug(fmt, *args)


@dataclass
class ServiceEntry:
    key: str
    kind: str
    name: str
    instance: str
    host: str
    state: str
    started_at: int
    heartbeat_at: int
    interval_s: float
    figures: dict[str, Any]
    metrics_url: str | None

    def age_s(self, now_ms: int | None = None) -> float:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0.0, (now_ms - self.heartbeat_at) / 1000)

    def stale(self, factor: float = 3.0, now_ms: int | None = None) -> bool:
        """No heartbeat for ``factor`` times the service's interval."""
        return self.age_s(now_ms) > factor * self.interval_s


def parse_entry(key: bytes | None, value: bytes | None) -> ServiceEntry | None:
    """A status record's entry; None for a tombstone or a record that is not one (logged)."""
    if key is None or value is None:
        return None
    try:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(f"{len(value)} bytes, more than {MAX_VALUE_BYTES}")
        v = json.loads(value)
        if not isinstance(v, dict):
            raise ValueError("not a JSON object")
        figures = v.get("figures") or {}
        url = v.get("metrics_url")
        return ServiceEntry(
            key=key.decode("utf-8", "replace"),
            kind=str(v["kind"]),
            name=str(v["name"]),
            instance=str(v["instance"]),
            host=str(v.get("host", "")),
            state=str(v.get("state", "")),
            started_at=int(v.get("started_at", 0)),
            heartbeat_at=int(v["heartbeat_at"]),
            interval_s=float(v.get("interval_s", DEFAULT_INTERVAL_S)),
            figures=figures if isinstance(figures, dict) else {},
            metrics_url=url
            if isinstance(url, str) and url.startswith(("http://", "https://"))
            else None,
        )
    except (ValueError, KeyError, TypeError) as e:
        log.info(
            "ignoring a record of the status topic that is not a status (key %r): %s", key[:100], e
        )
        return None


class ServiceDirectory:
    """The services that report in, read from the status topic by a consumer without a group
    (assigned every partition from the beginning, then following). ``update()`` reads what is
    new; entries whose last heartbeat is older than ``forget_s`` are dropped, at most
    ``max_entries`` are kept (the oldest heartbeats go first)."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str = TOPIC,
        forget_s: float = 24 * 3600,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.config = dict(config)
        self.topic = topic
        self.forget_s = forget_s
        self.max_entries = max_entries
        self.entries: dict[str, ServiceEntry] = {}
        self._consumer: Consumer | None = None
        self._assigned: set[int] = set()

    def update(self, partitions: int, timeout: float = 5.0) -> dict[str, ServiceEntry]:
        """Read the topic (with ``partitions`` partitions) up to its end as of now."""
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self.config,
                    "group.id": "riverbed-console-services",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": True,
                }
            )
        c = self._consumer
        new = [p for p in range(partitions) if p not in self._assigned]
        if new:
            c.incremental_assign([TopicPartition(self.topic, p, 0) for p in new])
            self._assigned.update(new)
        ends = {
            p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)[1]
            for p in self._assigned
        }
        deadline = time.monotonic() + timeout
        pending = {p for p, end in ends.items() if self._position(p) < end}
        while pending and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    else:
                        log.info("status topic: %s", err)
                    continue
                key = m.key()
                entry = parse_entry(key, m.value())
                k = (key or b"").decode("utf-8", "replace")
                if entry is None:
                    self.entries.pop(k, None)
                else:
                    self.entries[k] = entry
                part, off = m.partition() or 0, m.offset() or 0
                if off + 1 >= ends.get(part, 0):
                    pending.discard(part)
            pending = {p for p in pending if self._position(p) < ends[p]}
        self._prune()
        return dict(self.entries)

    def _position(self, partition: int) -> int:
        assert self._consumer is not None
        pos = self._consumer.position([TopicPartition(self.topic, partition)])[0].offset
        return pos if pos >= 0 else 0

    def _prune(self) -> None:
        now = int(time.time() * 1000)
        for k, e in list(self.entries.items()):
            if e.age_s(now) > self.forget_s:
                del self.entries[k]
        if len(self.entries) > self.max_entries:
            for k, _ in sorted(self.entries.items(), key=lambda kv: kv[1].heartbeat_at)[
                : len(self.entries) - self.max_entries
            ]:
                del self.entries[k]

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
