"""The broker's Prometheus metrics (docs/metrics.md): a prometheus_client collector that,
when scraped, reads the plain counters the broker, the server and the storage flusher keep
(``riverbed.broker.stats``, ``riverbed.server.stats``, ``LogManager.flush_stats``) and the
state of logs and groups, and turns them into metric families.

Reading happens on the broker's event loop (one short callback per scrape that copies
numbers: no lock, and a consistent view of the loop's own state); building and encoding the
exposition happens on the scraping thread (``riverbed.app.metrics_http``). Nothing here
runs per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.extensions import EXTENSIONS
from riverbed.protocol.messages import API_MESSAGES
from riverbed.stats import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram

if TYPE_CHECKING:
    from .runtime import RiverbedApp

API_NAMES: dict[int, str] = {key: req.removesuffix("Request") for key, (_, req, _) in API_MESSAGES.items()}
API_NAMES.update({key: classes[0].__name__.removesuffix("Request") for key, classes in EXTENSIONS.items()})

Buckets = tuple[list[int], float]  # cumulative counts (+Inf last), sum


def api_name(key: int) -> str:
    return API_NAMES.get(key, "other")


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


@dataclass
class Snapshot:
    """Numbers copied on the event loop, exposed on the scraping thread."""

    requests: dict[str, dict[int, Buckets]] = field(default_factory=dict)  # total/local/remote
    connections: dict[str, int] = field(default_factory=dict)  # listener -> open now
    accepted: dict[str, int] = field(default_factory=dict)  # listener -> since start
    failed_authentications: int = 0
    bytes_in: dict[str, int] = field(default_factory=dict)
    records_in: dict[str, int] = field(default_factory=dict)
    bytes_out: dict[str, int] = field(default_factory=dict)
    errors: dict[tuple[int, int], int] = field(default_factory=dict)
    flush: dict[str, Buckets] = field(default_factory=dict)  # seconds / logs / records
    # (topic, partition, size, segments, log start, log end, high watermark)
    partitions: list[tuple[str, int, int, int, int, int, int]] = field(default_factory=list)
    group_members: dict[str, int] = field(default_factory=dict)
    # (group, topic, partition, committed offset, lag)
    group_offsets: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    loop_lag: Buckets | None = None
    producer_ids: int = 0  # producers with state, summed over partitions
    cleaner: dict[str, int] = field(default_factory=dict)  # bytes read / written, uncleanable
    clean_seconds: Buckets | None = None
    # (topic, partition, remote bytes, remote segments, segments copied since start)
    remote: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    transactions: dict[str, int] = field(default_factory=dict)  # state -> transactional ids


def take_snapshot(app: RiverbedApp, loop_lag: Histogram | None) -> Snapshot:
    """Copy every number the metrics need. Runs on the broker's event loop."""
    broker = app.broker
    snap = Snapshot()
    for kind in ("total", "local", "remote"):
        merged: dict[int, Buckets] = {}
        for server in app.servers:
            for key, times in list(server.request_stats.apis.items()):
                hist = getattr(times, kind)
                if not any(hist.counts):
                    continue  # no remote time: answered synchronously every time
                counts, total = hist.snapshot()
                if key in merged:
                    prev = merged[key]
                    counts = [a + b for a, b in zip(prev[0], counts, strict=True)]
                    total += prev[1]
                merged[key] = (counts, total)
        snap.requests[kind] = merged
    for server in app.servers:
        name = server.config.listener_name
        snap.connections[name] = len(server.connections)
        snap.accepted[name] = server.connections_accepted
        snap.failed_authentications += server.failed_authentications
    snap.failed_authentications += broker.auth_throttle.failures_total
    stats = broker.stats
    snap.bytes_in, snap.records_in, snap.bytes_out = dict(stats.bytes_in), dict(stats.records_in), dict(stats.bytes_out)
    snap.errors = dict(stats.errors)
    flush = getattr(broker.logs, "flush_stats", None)  # the segment engine's flusher
    if flush is not None:
        snap.flush = {"seconds": flush.seconds.snapshot(), "logs": flush.logs.snapshot(), "records": flush.records.snapshot()}
    ends: dict[tuple[str, int], int] = {}
    remote = getattr(broker.logs, "remote", None)  # tiering (with an object store)
    uncleanable = 0
    for plog in broker.logs.partitions():
        hw = plog.high_watermark
        producers = getattr(plog, "producers", None)  # the engines' producer-state table
        snap.producer_ids += len(producers) if producers is not None else 0
        state = getattr(plog, "cleaner_state", None)
        uncleanable += 1 if state is not None and state.uncleanable else 0
        status = remote.status(plog.topic, plog.partition) if remote is not None else None
        if status is not None:
            done = status.metadata.finished()
            snap.remote.append((plog.topic, plog.partition, sum(s.size for s in done), len(done), status.copied))
        snap.partitions.append((plog.topic, plog.partition, plog.size_bytes, plog.segment_count, plog.log_start_offset, plog.log_end_offset, hw))
        ends[(plog.topic, plog.partition)] = hw
    members = broker.groups.consumer.member_counts()
    for group_id, classic_members, offsets in broker.groups.coordinator.metrics_view():
        snap.group_members[group_id] = classic_members + members.pop(group_id, 0)
        for (topic, partition), committed in offsets.items():
            end = ends.get((topic, partition))
            if end is not None:  # a deleted topic's offsets have no lag
                snap.group_offsets.append((group_id, topic, partition, committed, end - committed))
    snap.group_members.update(members)  # KIP-848 groups without committed offsets
    cleaner = getattr(broker.logs, "cleaner", None)  # the segment engine's log cleaner
    if cleaner is not None:
        snap.cleaner = {"read": cleaner.bytes_read, "written": cleaner.bytes_written, "uncleanable": uncleanable}
        snap.clean_seconds = cleaner.clean_seconds.snapshot()
    for entry in broker.txns.coordinator.list()[1]:
        snap.transactions[entry.state] = snap.transactions.get(entry.state, 0) + 1
    if loop_lag is not None:
        snap.loop_lag = loop_lag.snapshot()
    return snap


def _histogram(name: str, doc: str, labels: list[str], series: Iterable[tuple[list[str], Buckets]], bounds: tuple[float, ...]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, (counts, total) in series:
        buckets = [(_le(b), c) for b, c in zip(bounds, counts, strict=False)] + [("+Inf", counts[-1])]
        family.add_metric(values, buckets, total)
    return family


def _le(bound: float) -> str:
    return repr(float(bound))


class BrokerCollector(Collector):
    """Collects from a running RiverbedApp whose event loop is ``loop``."""

    def __init__(self, app: RiverbedApp, loop: asyncio.AbstractEventLoop, loop_lag: Histogram | None = None, timeout: float = 10.0) -> None:
        self.app = app
        self.loop = loop
        self.loop_lag = loop_lag
        self.timeout = timeout

    def _snapshot(self) -> Snapshot:
        fut: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(take_snapshot(self.app, self.loop_lag))
            except BaseException as exc:  # surfaced to the scraper as a 500
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(self.timeout)

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from self._requests(snap)
        yield from self._topics(snap)
        yield from self._logs(snap)
        yield from self._groups(snap)
        yield from self._connections(snap)
        yield from self._producers(snap)
        yield from self._cleaner_and_tiering(snap)
        if snap.loop_lag is not None:
            yield _histogram("riverbed_event_loop_lag_seconds", "How late the broker's event loop ran a timer (sampled twice a second)", [], [([], snap.loop_lag)], LATENCY_BUCKETS)

    @staticmethod
    def _requests(snap: Snapshot) -> Iterator[Metric]:
        total = snap.requests.get("total", {})
        requests = CounterMetricFamily("riverbed_requests", "Requests answered, per API (Kafka RequestsPerSec)", labels=["api"])
        for key, (counts, _) in sorted(total.items()):
            requests.add_metric([api_name(key)], counts[-1])
        yield requests
        errors = CounterMetricFamily("riverbed_request_errors", "Error codes in responses, per API and error (Kafka ErrorsPerSec; NONE not counted)", labels=["api", "error"])
        for (key, code), n in sorted(snap.errors.items()):
            errors.add_metric([api_name(key), error_name(code)], n)
        yield errors
        docs = {
            "total": "Time from a request's dispatch until its answer is handed to the socket (Kafka TotalTimeMs)",
            "local": "Time the broker's event loop spent on a request (Kafka LocalTimeMs)",
            "remote": "Time a request waited for an fsync, a long poll or a rebalance before its answer (Kafka RemoteTimeMs)",
        }
        for kind, doc in docs.items():
            series = [([api_name(key)], b) for key, b in sorted(snap.requests.get(kind, {}).items())]
            yield _histogram(f"riverbed_request_{kind}_time_seconds", doc, ["api"], series, LATENCY_BUCKETS)

    @staticmethod
    def _topics(snap: Snapshot) -> Iterator[Metric]:
        for name, doc, table in (
            ("riverbed_topic_bytes_in", "Record bytes appended by Produce, per topic (Kafka BytesInPerSec)", snap.bytes_in),
            ("riverbed_topic_records_in", "Records appended by Produce, per topic (Kafka MessagesInPerSec)", snap.records_in),
            ("riverbed_topic_bytes_out", "Record bytes returned by Fetch, per topic (Kafka BytesOutPerSec)", snap.bytes_out),
        ):
            family = CounterMetricFamily(name, doc, labels=["topic"])
            for topic, n in sorted(table.items()):
                family.add_metric([topic], n)
            yield family

    @staticmethod
    def _logs(snap: Snapshot) -> Iterator[Metric]:
        if snap.flush:
            yield _histogram("riverbed_log_flush_seconds", "Duration of a group-commit flush cycle: syncfs and the fsyncs of every dirty log (Kafka LogFlushRateAndTimeMs)", [], [([], snap.flush["seconds"])], LATENCY_BUCKETS)
            yield _histogram("riverbed_log_flush_partitions", "Partition logs fsynced by one flush cycle", [], [([], snap.flush["logs"])], SIZE_BUCKETS)
            yield _histogram("riverbed_log_flush_records", "Records made durable by one flush cycle (the group-commit size)", [], [([], snap.flush["records"])], SIZE_BUCKETS)
        gauges = [
            GaugeMetricFamily("riverbed_log_size_bytes", "Bytes of a partition's local segments (Kafka Log Size)", labels=["topic", "partition"]),
            GaugeMetricFamily("riverbed_log_segments", "Local segments of a partition (Kafka NumLogSegments)", labels=["topic", "partition"]),
            GaugeMetricFamily("riverbed_log_start_offset", "First offset of a partition (Kafka LogStartOffset)", labels=["topic", "partition"]),
            GaugeMetricFamily("riverbed_log_end_offset", "Offset of the next record appended to a partition (Kafka LogEndOffset)", labels=["topic", "partition"]),
            GaugeMetricFamily("riverbed_log_high_watermark", "Offset up to which a partition's records are visible to consumers (Kafka HighWatermark)", labels=["topic", "partition"]),
        ]
        for topic, partition, *values in sorted(snap.partitions):
            labels = [topic, str(partition)]
            for gauge, value in zip(gauges, values, strict=True):
                gauge.add_metric(labels, value)
        yield from gauges

    @staticmethod
    def _groups(snap: Snapshot) -> Iterator[Metric]:
        members = GaugeMetricFamily("riverbed_group_members", "Members of a consumer group (classic and KIP-848)", labels=["group"])
        for group, n in sorted(snap.group_members.items()):
            members.add_metric([group], n)
        yield members
        # the committed offset itself is riverbed_log_high_watermark - riverbed_group_lag (one
        # series per group and partition is what a scrape's cost grows with)
        lag = GaugeMetricFamily("riverbed_group_lag", "High watermark minus a group's committed offset (the LAG of kafka-consumer-groups)", labels=["group", "topic", "partition"])
        for group, topic, partition, _offset, behind in sorted(snap.group_offsets):
            lag.add_metric([group, topic, str(partition)], behind)
        yield lag

    @staticmethod
    def _cleaner_and_tiering(snap: Snapshot) -> Iterator[Metric]:
        if snap.cleaner:
            for name, key, doc in (
                ("riverbed_log_cleaner_bytes_read", "read", "Bytes the log cleaner read in completed cleans (Kafka cleaner-recopy-percent = written / read)"),
                ("riverbed_log_cleaner_bytes_written", "written", "Bytes the log cleaner wrote in completed cleans"),
            ):
                counter = CounterMetricFamily(name, doc)
                counter.add_metric([], snap.cleaner[key])
                yield counter
            gauge = GaugeMetricFamily("riverbed_log_cleaner_uncleanable_partitions", "Partitions the cleaner gave up on after an error (Kafka uncleanable-partitions-count)")
            gauge.add_metric([], snap.cleaner["uncleanable"])
            yield gauge
        if snap.clean_seconds is not None:
            yield _histogram("riverbed_log_cleaner_clean_seconds", "Duration of each completed clean of a log (Kafka max-clean-time-secs)", [], [([], snap.clean_seconds)], LATENCY_BUCKETS)
        size = GaugeMetricFamily("riverbed_log_remote_size_bytes", "Bytes of a partition's segments in the object store (Kafka RemoteLogSizeBytes)", labels=["topic", "partition"])
        segments = GaugeMetricFamily("riverbed_log_remote_segments", "Segments of a partition in the object store", labels=["topic", "partition"])
        copied = CounterMetricFamily("riverbed_remote_segments_copied", "Segments copied to the object store since start (Kafka RemoteCopyRequestsPerSec)", labels=["topic", "partition"])
        for topic, partition, nbytes, nsegments, ncopied in sorted(snap.remote):
            labels = [topic, str(partition)]
            size.add_metric(labels, nbytes)
            segments.add_metric(labels, nsegments)
            copied.add_metric(labels, ncopied)
        yield size
        yield segments
        yield copied

    @staticmethod
    def _producers(snap: Snapshot) -> Iterator[Metric]:
        pids = GaugeMetricFamily("riverbed_producer_ids", "Producer ids with state (idempotent or transactional), summed over partitions (Kafka ProducerIdCount)")
        pids.add_metric([], snap.producer_ids)
        yield pids
        txns = GaugeMetricFamily("riverbed_transactions", "Transactional ids the coordinator knows, per state (as ListTransactions shows them)", labels=["state"])
        for state, n in sorted(snap.transactions.items()):
            txns.add_metric([state], n)
        yield txns

    @staticmethod
    def _connections(snap: Snapshot) -> Iterator[Metric]:
        open_now = GaugeMetricFamily("riverbed_connections", "Open client connections per listener (Kafka connection-count)", labels=["listener"])
        accepted = CounterMetricFamily("riverbed_connections_accepted", "Connections accepted per listener since start (Kafka connection-creation-total)", labels=["listener"])
        for listener in sorted(snap.connections):
            open_now.add_metric([listener], snap.connections[listener])
            accepted.add_metric([listener], snap.accepted[listener])
        yield open_now
        yield accepted
        failed = CounterMetricFamily("riverbed_failed_authentication", "Failed SASL logins and refused TLS client certificates (Kafka failed-authentication-total)")
        failed.add_metric([], snap.failed_authentications)
        yield failed
