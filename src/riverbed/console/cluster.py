"""What the console knows about the cluster, read only through confluent-kafka's AdminClient
(and, for sizes, the DescribeLogDirs request of `wire`).

Lists (topics with sizes, retention and the lag of every consuming group; groups with their
lag) come from a snapshot that a background thread refreshes every `refresh_s` seconds, so a
page with 1,000 topics and 500 groups renders from memory instead of waiting on 500 OffsetFetch
round trips. Detail pages (one topic, one group) read live. When the cluster cannot be reached
the snapshot keeps the last good data and records the error, which every page shows as a banner
while the thread keeps retrying."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    OffsetSpec,
    ResourceType,
)

from riverbed.client import ClusterSettings, admin
from riverbed.client.status import TOPIC as SERVICES_TOPIC
from riverbed.client.status import ServiceDirectory, ServiceEntry

from . import wire

log = logging.getLogger("riverbed.console")

REQUEST_TIMEOUT_S = 5.0
HISTORY = 360  # lag points kept per group (30 min at the default 5 s refresh)
WATCH_S = 1800  # a group's page keeps its per-partition lag history for 30 min after a view
MAX_WATCHED = 50  # groups with per-partition history at once (bounded memory)


@dataclass
class PartitionInfo:
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    low: int = -1
    high: int = -1
    size: int | None = None
    remote: int | None = None  # tiered bytes (riverbed's DescribeLogStats), None: not tiered


@dataclass
class TopicInfo:
    name: str
    internal: bool
    partitions: list[PartitionInfo]
    retention_ms: str | None = None
    retention_bytes: str | None = None
    cleanup_policy: str | None = None
    group_lag: dict[str, int] = field(default_factory=dict)  # consuming group -> total lag

    @property
    def records(self) -> int:
        return sum(max(0, p.high - p.low) for p in self.partitions if p.high >= 0 and p.low >= 0)

    @property
    def remote(self) -> int | None:
        tiered = [p.remote for p in self.partitions if p.remote is not None]
        return sum(tiered) if tiered else None

    @property
    def size(self) -> int | None:
        sizes = [p.size for p in self.partitions]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


@dataclass
class GroupInfo:
    group_id: str
    state: str
    kind: str = "classic"
    members: int = 0
    topics: list[str] = field(default_factory=list)
    lag: int = 0
    lag_by_topic: dict[str, int] = field(default_factory=dict)
    lag_by_partition: dict[tuple[str, int], int] = field(default_factory=dict)  # watched groups only


@dataclass
class Snapshot:
    taken_at: float = 0.0
    cluster_id: str | None = None
    controller: int | None = None
    brokers: list[tuple[int, str, int]] = field(default_factory=list)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    groups: dict[str, GroupInfo] = field(default_factory=dict)
    sizes_error: str | None = None
    services: dict[str, ServiceEntry] = field(default_factory=dict)  # services that report in, by key
    services_error: str | None = None
    error: str | None = None  # the last refresh failed: the cluster is unreachable or refused
    error_since: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.taken_at > 0


def _result(fut: Future[Any], timeout: float = REQUEST_TIMEOUT_S) -> Any:
    return fut.result(timeout + 1)


def watermarks(client: AdminClient, partitions: Iterable[tuple[str, int]], timeout: float = REQUEST_TIMEOUT_S) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) of each partition: ListOffsets earliest and latest."""
    parts = list(partitions)
    if not parts:
        return {}
    out: dict[tuple[str, int], list[int]] = {tp: [-1, -1] for tp in parts}
    spec_cls: Any = OffsetSpec
    for idx, spec in ((0, spec_cls.earliest()), (1, spec_cls.latest())):
        futs = client.list_offsets({TopicPartition(t, p): spec for t, p in parts}, request_timeout=timeout)
        for tp, fut in futs.items():
            try:
                out[(tp.topic, tp.partition)][idx] = _result(fut, timeout).offset
            except KafkaException as exc:
                log.debug("list offsets %s-%d: %s", tp.topic, tp.partition, exc)
    return {tp: (lo, hi) for tp, (lo, hi) in out.items()}


def committed_offsets(client: AdminClient, group_ids: list[str], timeout: float = REQUEST_TIMEOUT_S) -> dict[str, dict[tuple[str, int], int]]:
    """Each group's committed offsets (OffsetFetch), all requests in flight at once."""
    futs: dict[str, Future[Any]] = {}
    for gid in group_ids:
        futs.update(client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)], request_timeout=timeout))
    out: dict[str, dict[tuple[str, int], int]] = {}
    for gid, fut in futs.items():
        try:
            res = _result(fut, timeout)
        except KafkaException as exc:
            log.debug("offsets of group %s: %s", gid, exc)
            continue
        out[gid] = {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions if tp.offset >= 0}
    return out


class ClusterView:
    def __init__(self, settings: ClusterSettings, refresh_s: float = 5.0, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self.timeout = timeout_s  # of each request of a refresh
        self._admin: AdminClient | None = None
        self._stats = True  # ask for tiered bytes (riverbed's DescribeLogStats) until refused
        self.snapshot = Snapshot()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._refreshed = threading.Condition()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self.history: dict[str, deque[tuple[float, int]]] = {}  # group -> (time, total lag), last HISTORY points
        # per-partition lag over time, for the groups whose page was viewed lately
        self.watched: dict[str, float] = {}
        self.partition_history: dict[str, dict[tuple[str, int], deque[tuple[float, int]]]] = {}
        self.services_topic = SERVICES_TOPIC
        self._services: ServiceDirectory | None = None

    @property
    def admin(self) -> AdminClient:
        """Made on first use (a console with login has no client of its own)."""
        if self._admin is None:
            self._admin = admin(self.settings, **{"socket.timeout.ms": 5000, "reconnect.backoff.max.ms": 2000})
        return self._admin

    def watch(self, group_id: str) -> None:
        """Keep `group_id`'s per-partition lag history from the next refresh on (for
        WATCH_S after the last call; at most MAX_WATCHED groups, the least recent dropped)."""
        now = time.monotonic()
        self.watched[group_id] = now
        for gid, seen in sorted(self.watched.items(), key=lambda kv: kv[1]):
            if now - seen > WATCH_S or len(self.watched) > MAX_WATCHED:
                del self.watched[gid]
                self.partition_history.pop(gid, None)

    # -- the background refresher ------------------------------------------------------------
    def start(self) -> ClusterView:
        self._thread = threading.Thread(target=self._run, name="console-refresh", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(REQUEST_TIMEOUT_S * 3)
        if self._services is not None:
            self._services.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._wake.wait(self.refresh_s)
            self._wake.clear()

    def refresh_soon(self, wait: float = 0.0) -> None:
        """Ask for a refresh now (after a change); with `wait`, block until it is done."""
        with self._refreshed:
            gen = self._generation
        self._wake.set()
        if wait > 0:
            with self._refreshed:
                self._refreshed.wait_for(lambda: self._generation > gen, wait)

    def refresh(self) -> Snapshot:
        started = time.monotonic()
        try:
            snap = self._read()
        except Exception as exc:  # the cluster is down or refused: keep the last good data
            old = self.snapshot
            message = _describe(exc)
            if old.error is None:
                log.warning("console cannot read the cluster at %s: %s (retrying every %.0f s)", self.settings.bootstrap, message, self.refresh_s)
            snap = Snapshot(**{**old.__dict__, "error": message, "error_since": old.error_since or time.time()})
        else:
            if self.snapshot.error is not None:
                log.warning("console reaches the cluster at %s again", self.settings.bootstrap)
            for gid, g in snap.groups.items():
                self.history.setdefault(gid, deque(maxlen=HISTORY)).append((snap.taken_at, g.lag))
            for gid in set(self.history) - set(snap.groups):
                del self.history[gid]
            for gid in list(self.watched):
                watched = snap.groups.get(gid)
                if watched is None:
                    continue
                series = self.partition_history.setdefault(gid, {})
                for tp, lag in watched.lag_by_partition.items():
                    series.setdefault(tp, deque(maxlen=HISTORY)).append((snap.taken_at, lag))
            log.debug("console snapshot: %d topics, %d groups in %.0f ms", len(snap.topics), len(snap.groups), (time.monotonic() - started) * 1000)
        self.snapshot = snap
        with self._refreshed:
            self._generation += 1
            self._refreshed.notify_all()
        return snap

    def _read(self) -> Snapshot:
        client = self.admin
        md = client.list_topics(timeout=self.timeout)
        snap = Snapshot(taken_at=time.time(), cluster_id=md.cluster_id, controller=md.controller_id)
        snap.brokers = sorted((b.id, b.host or "", b.port) for b in md.brokers.values())
        for name, tmd in md.topics.items():
            if tmd.error is not None:
                continue
            parts = [PartitionInfo(p.id, p.leader, list(p.replicas), list(p.isrs)) for p in sorted(tmd.partitions.values(), key=lambda p: p.id)]
            snap.topics[name] = TopicInfo(name, name.startswith("__") or name == "_schemas", parts)
        marks = watermarks(client, [(t.name, p.partition) for t in snap.topics.values() for p in t.partitions], self.timeout)
        for t in snap.topics.values():
            for p in t.partitions:
                p.low, p.high = marks.get((t.name, p.partition), (-1, -1))
        self._read_configs(snap)
        try:
            sizes = wire.partition_sizes([f"{host}:{port}" for _, host, port in snap.brokers], self.settings.client, self.timeout)
        except (wire.WireError, OSError) as exc:
            snap.sizes_error = str(exc)
        else:
            for t in snap.topics.values():
                for p in t.partitions:
                    p.size = sizes.get((t.name, p.partition))
        if self._stats:
            try:
                stats = wire.storage([f"{host}:{port}" for _, host, port in snap.brokers], self.settings.client, self.timeout)
            except wire.Unsupported:
                self._stats = False  # not riverbed (Apache Kafka closes the connection): stop asking
            except (wire.WireError, OSError) as exc:
                log.debug("tiered bytes not read: %s", exc)
            else:
                for t in snap.topics.values():
                    for p in t.partitions:
                        p.remote = stats.get((t.name, p.partition), (0, None))[1]
        self._read_groups(snap, marks)
        self._read_services(snap)
        return snap

    def _read_services(self, snap: Snapshot) -> None:
        """The services that report in (docs/adr/0015-services-report-in.md): the status topic
        read on from where the last refresh stopped."""
        topic = snap.topics.get(self.services_topic)
        if topic is None:
            return
        if self._services is None:
            self._services = ServiceDirectory(self.settings.client_config(**{"socket.timeout.ms": 5000}), self.services_topic)
        try:
            snap.services = self._services.update(len(topic.partitions), self.timeout)
        except KafkaException as exc:
            snap.services = dict(self._services.entries)
            snap.services_error = describe_error(exc)

    def _read_configs(self, snap: Snapshot) -> None:
        names = list(snap.topics)
        if not names:
            return
        futs = client_describe_configs(self.admin, names, self.timeout)
        for name, fut in futs.items():
            try:
                entries = _result(fut, self.timeout)
            except KafkaException:
                continue
            t = snap.topics[name]
            t.retention_ms = _value(entries, "retention.ms")
            t.retention_bytes = _value(entries, "retention.bytes")
            t.cleanup_policy = _value(entries, "cleanup.policy")

    def _read_groups(self, snap: Snapshot, marks: dict[tuple[str, int], tuple[int, int]]) -> None:
        listing = _result(self.admin.list_consumer_groups(request_timeout=self.timeout), self.timeout)
        for g in listing.valid:
            state = getattr(g.state, "name", str(g.state)).title().replace("_", "")
            kind = getattr(getattr(g, "type", None), "name", "CLASSIC").lower()
            snap.groups[g.group_id] = GroupInfo(g.group_id, state, kind)
        ids = list(snap.groups)
        if ids:
            for gid, fut in self.admin.describe_consumer_groups(ids, request_timeout=self.timeout).items():
                try:
                    desc = _result(fut, self.timeout)
                except KafkaException:
                    continue
                snap.groups[gid].members = len(desc.members)
        for gid, offsets in committed_offsets(self.admin, ids, self.timeout).items():
            g = snap.groups[gid]
            for (topic, part), committed in offsets.items():
                high = marks.get((topic, part), (-1, -1))[1]
                lag = max(0, high - committed) if high >= 0 else 0
                g.lag += lag
                g.lag_by_topic[topic] = g.lag_by_topic.get(topic, 0) + lag
                if gid in self.watched:
                    g.lag_by_partition[(topic, part)] = lag
            g.topics = sorted(g.lag_by_topic)
            for topic, lag in g.lag_by_topic.items():
                if topic in snap.topics:
                    snap.topics[topic].group_lag[gid] = lag


def client_describe_configs(client: AdminClient, topics: list[str], timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Future[Any]]:
    futs = client.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics], request_timeout=timeout)
    return {res.name: fut for res, fut in futs.items()}


def _value(entries: dict[str, Any], name: str) -> str | None:
    entry = entries.get(name)
    return None if entry is None else entry.value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args:
        err = exc.args[0]
        if hasattr(err, "str"):
            return f"{err.name()}: {err.str()}"
    if isinstance(exc, TimeoutError):
        return "no answer within the request timeout"
    return f"{type(exc).__name__}: {exc}"


def describe_error(exc: BaseException) -> str:
    return _describe(exc)
