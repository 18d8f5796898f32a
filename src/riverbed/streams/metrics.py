"""Metrics of a running streams application, and its status record.

The runtime's processing thread keeps plain counters in a :class:`StreamsStats` (a dict
increment per record, a clock read per batch); a scrape turns them into Prometheus metrics
(``riverbed_streams_*``, see docs/metrics.md for the Kafka Streams metric each mirrors) on the
HTTP server's thread. ``StreamsApp(..., metrics_port=PORT)`` serves them at
``http://127.0.0.1:PORT/metrics`` on riverbed's ASGI stack (riverbed.web).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from riverbed.client.status import Status

if TYPE_CHECKING:
    from .runtime import Runtime

# KafkaStreams.State
STATES = (
    "CREATED",
    "REBALANCING",
    "RUNNING",
    "PENDING_SHUTDOWN",
    "NOT_RUNNING",
    "PENDING_ERROR",
    "ERROR",
)
MAX_RESTORES_REPORTED = 20  # in the status record (figures stay small)


@dataclass
class StreamsStats:
    """Counters the runtime bumps; read (not locked: ints and dict copies) by scrapes."""

    state: str = "CREATED"
    consumed: dict[tuple[str, int], int] = field(
        default_factory=dict
    )  # (topic, partition) -> records
    produced: dict[str, int] = field(
        default_factory=dict
    )  # topic -> records handed to the producer
    process_seconds: float = 0.0  # processing time of consumed records (batch by batch)
    process_records: int = 0
    punctuations: int = 0
    punctuate_seconds: float = 0.0
    commits: int = 0
    commit_seconds: float = 0.0
    rebalances: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> records
    started_at: float = field(default_factory=time.time)

    def count_produced(self, topic: str) -> None:
        self.produced[topic] = self.produced.get(topic, 0) + 1

    def committed(self, seconds: float) -> None:
        self.commits += 1
        self.commit_seconds += seconds


def store_size(engine: Any) -> int | None:
    """Bytes of a SQLite store on disk (the file and its WAL); None for in-memory stores."""
    path = getattr(engine, "path", None)
    if path is None:
        return None
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


class StreamsCollector:
    """prometheus_client collector reading a Runtime's StreamsStats at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        rt, st = self.rt, self.rt.stats
        app = rt.app_id
        sub_of = rt.topology.sub_for_topic

        state = GaugeMetricFamily(
            "riverbed_streams_state",
            "1 for the application's current state (KafkaStreams.State)",
            labels=["app", "state"],
        )
        for s in STATES:
            state.add_metric([app, s], 1.0 if st.state == s else 0.0)
        yield state
        tasks = GaugeMetricFamily(
            "riverbed_streams_active_tasks", "Tasks this instance runs", labels=["app"]
        )
        tasks.add_metric([app], len(rt.tasks))
        yield tasks

        consumed = CounterMetricFamily(
            "riverbed_streams_records_consumed",
            "Records consumed, per task and source topic",
            labels=["app", "task", "topic"],
        )
        for (topic, part), n in sorted(dict(st.consumed).items()):
            sub = sub_of.get(topic)
            consumed.add_metric([app, f"{sub.id if sub else '?'}_{part}", topic], n)
        yield consumed
        produced = CounterMetricFamily(
            "riverbed_streams_records_produced",
            "Records sent, per topic (outputs, repartition topics, changelogs, dead letters)",
            labels=["app", "topic"],
        )
        for topic, n in sorted(dict(st.produced).items()):
            produced.add_metric([app, topic], n)
        yield produced

        process = SummaryMetricFamily(
            "riverbed_streams_process_latency_seconds",
            "Processing time per record (measured per consumed batch)",
            labels=["app"],
        )
        process.add_metric([app], st.process_records, st.process_seconds)
        yield process
        punct = SummaryMetricFamily(
            "riverbed_streams_punctuate_latency_seconds",
            "Punctuation rounds (wall-clock ticks over every task) and their time",
            labels=["app"],
        )
        punct.add_metric([app], st.punctuations, st.punctuate_seconds)
        yield punct
        commit = SummaryMetricFamily(
            "riverbed_streams_commit_latency_seconds",
            "Commits (flush or transaction, store checkpoints, offsets) and their time",
            labels=["app"],
        )
        commit.add_metric([app], st.commits, st.commit_seconds)
        yield commit
        rebalances = CounterMetricFamily(
            "riverbed_streams_rebalances",
            "Partition assignments received (rebalances this instance took part in)",
            labels=["app"],
        )
        rebalances.add_metric([app], st.rebalances)
        yield rebalances

        lag = GaugeMetricFamily(
            "riverbed_streams_records_lag",
            "High watermark minus the next offset to process, per input partition",
            labels=["app", "topic", "partition"],
        )
        for (topic, part), n in sorted(dict(st.lag).items()):
            lag.add_metric([app, topic, str(part)], n)
        yield lag

        dropped = CounterMetricFamily(
            "riverbed_streams_dropped_records",
            "Records not processed: skipped (no key, bad timestamp), late, or failed with a skip / dead-letter policy",
            labels=["app", "task", "reason"],
        )
        late = CounterMetricFamily(
            "riverbed_streams_late_records",
            "Records that arrived after their window closed",
            labels=["app", "task"],
        )
        entries = GaugeMetricFamily(
            "riverbed_streams_store_entries",
            "Entries of an in-memory store",
            labels=["app", "task", "store"],
        )
        size = GaugeMetricFamily(
            "riverbed_streams_store_size_bytes",
            "Bytes of a persistent store on disk (SQLite file and WAL)",
            labels=["app", "task", "store"],
        )
        for task in list(rt.tasks.values()):
            for reason, n in sorted(dict(task.metrics).items()):
                if reason == "dead_lettered_records":  # (already counted as skipped or late)
                    continue
                if reason == "late_records":
                    late.add_metric([app, task.task_id], n)
                reason = {
                    "late_records": "late",
                    "skipped_records": "skipped",
                    "processing_errors": "processing_error",
                    "deserialization_errors": "deserialization_error",
                    "production_errors": "production_error",
                }.get(reason, reason)
                dropped.add_metric([app, task.task_id, reason], n)
            for name, engine in list(task.engines.items()):
                nbytes = store_size(engine)
                if nbytes is None:
                    entries.add_metric([app, task.task_id, name], engine.count())
                else:
                    size.add_metric([app, task.task_id, name], nbytes)
        yield dropped
        yield late
        yield entries
        yield size

        restored = GaugeMetricFamily(
            "riverbed_streams_restore_records_restored",
            "Changelog offsets restored by the latest restore of a store",
            labels=["app", "task", "store"],
        )
        remaining = GaugeMetricFamily(
            "riverbed_streams_restore_remaining_records",
            "Changelog offsets still to restore",
            labels=["app", "task", "store"],
        )
        total = GaugeMetricFamily(
            "riverbed_streams_restore_total_records",
            "Changelog offsets the latest restore of a store replays",
            labels=["app", "task", "store"],
        )
        for key, (done, todo) in sorted(dict(rt.restore_progress).items()):
            store, _, task_id = key.rpartition("/")
            restored.add_metric([app, task_id, store], done)
            remaining.add_metric([app, task_id, store], max(todo - done, 0))
            total.add_metric([app, task_id, store], todo)
        yield restored
        yield remaining
        yield total


def status_of(rt: Runtime) -> Status:
    """The figures a streams app reports in with (docs/adr/0015-services-report-in.md)."""
    st = rt.stats
    figures: dict[str, Any] = {
        "tasks": len(rt.tasks),
        "consumed": sum(st.consumed.values()),
        "produced": sum(st.produced.values()),
        "lag": sum(st.lag.values()),
        "commits": st.commits,
        "rebalances": st.rebalances,
        "guarantee": "exactly_once" if rt.eos else "at_least_once",
    }
    restoring = {k: [d, t] for k, (d, t) in sorted(dict(rt.restore_progress).items()) if d < t}
    if restoring:
        figures["restoring"] = dict(list(restoring.items())[:MAX_RESTORES_REPORTED])
        figures["restore_remaining"] = sum(t - d for d, t in restoring.values())
    figures.update(rt.status_figures)
    if rt.application_server:
        figures["application_server"] = rt.application_server
    return Status(rt.status_kind, rt.status_name, st.state, figures, rt.metrics_url)


def serve_metrics(rt: Runtime, host: str, port: int) -> Any:
    """Start ``GET /metrics`` for ``rt`` on riverbed's ASGI stack in a background thread; the
    started riverbed.web.HttpServer (port 0: a free port)."""
    from riverbed.web import HttpMetrics, HttpServer, create_app

    metrics = HttpMetrics("streams")
    metrics.registry.register(StreamsCollector(rt))
    return HttpServer(create_app([], metrics=metrics), host, port).start_in_thread()
