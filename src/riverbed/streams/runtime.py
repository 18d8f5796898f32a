"""The runtime: runs a topology against a Kafka cluster through confluent-kafka.

One consumer in the group ``application.id``, one task per (sub-topology, partition), one
producer for outputs, repartition records and changelog writes, and one assign-mode consumer
(:class:`~.restore.ChangelogReader`) for restores and standby replicas.

Rebalancing is cooperative (``cooperative-sticky``) when every sub-topology reads one source
topic: a rebalance revokes only the partitions that move, so the tasks that stay keep running
(no close, no re-open). A sub-topology with several source topics (joins, a table with a stream)
needs partition *p* of each on the same instance, which only the eager ``range`` assignor gives
with confluent-kafka (no custom assignors): such topologies rebalance eagerly. See
docs/adr/0016-streams-rebalancing-and-standbys.md.

A newly assigned task does not restore inside the assignment callback: its input partitions are
paused, its stores are restored a chunk at a time from the poll loop (the group consumer keeps
polling, so a long restore cannot exceed ``max.poll.interval.ms``), then it starts and its
partitions are resumed. ``num_standby_replicas=N`` keeps warm copies of other instances' stores
(see :meth:`Runtime._plan_standbys`); a task that moves to an instance holding its standby
restores only the changelog's tail. A task reading several topics processes its inputs'
records in timestamp order (:meth:`Runtime._drain_buffers`, Kafka's ``max.task.idle.ms``).

At-least-once: records are consumed in batches and processed; every ``commit_interval_ms`` the
producer is flushed (every output and changelog write acknowledged), then each store commits
with the changelog offset it reached, then the input offsets are committed. A crash replays at
most the records since the last commit.

Exactly-once (``processing_guarantee="exactly_once"``, Kafka's exactly_once_v2): one
transactional producer per instance; each commit sends the input offsets to the transaction
(with the consumer's group metadata, so a fenced member cannot commit) and commits it, so
outputs, repartition records, changelog writes and offsets become visible together; then the
stores commit locally. Consumers and restores read committed data only. A crash aborts the open
transaction (at ``transaction.timeout.ms``) and the store files roll back to their last commit.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from riverbed.client.factories import TRANSACTIONAL_DEFAULTS
from riverbed.client.status import DEFAULT_INTERVAL_S, StatusReporter

from . import internal_topics
from . import metrics as streams_metrics
from .cache import DEFAULT_CACHE_MAX_BYTES, RecordCache
from .global_state import GlobalState
from .global_table import GlobalStoreSpec
from .query import NotLocalError, QueryServer, StoreQueries, partition_for
from .records import StreamsError
from .restore import ON_CHANGELOG_LOST, ChangelogPartition, ChangelogReader
from .statedir import StateDirLock
from .stores import Engine, MemoryEngine, SqliteEngine
from .task import Task
from .topology import StoreSpec, Topology

log = logging.getLogger("riverbed.streams")


class _Collector:
    """Sends through the producer with callbacks; remembers changelog offsets and errors."""

    def __init__(self, producer: Producer, policy: str = "fail", dead_letter_topic: str | None = None,
                 internal: set[str] | None = None, eos: bool = False) -> None:
        self.producer = producer
        self.changelog_offsets: dict[tuple[str, int], int] = {}
        self.changelogs: set[str] = set()
        self.error: str | None = None
        self.sent = 0  # records handed to the producer (to skip commits with nothing to commit)
        self.produced: dict[str, int] = {}  # topic -> records (metrics)
        # the production error policy for deliveries the broker refused (output topics only;
        # internal topics, the dead-letter topic and exactly-once transactions always fail)
        self.policy, self.dead_letter_topic, self.eos = policy, dead_letter_topic, eos
        self.internal = internal or set()
        self.production_errors = 0
        self.dead_letters: list[tuple[str, int, Any, Any, int, Any, KafkaError]] = []

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            if err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
                return  # part of a transaction the runtime aborted (partitions lost)
            topic = msg.topic()
            if (self.policy == "fail" or self.eos or topic in self.internal or topic in self.changelogs
                    or topic == self.dead_letter_topic):
                if self.error is None:
                    self.error = f"{topic}: {err}"
                return
            self.production_errors += 1
            if self.policy == "dead_letter":  # (sent from the loop, not from inside the callback)
                self.dead_letters.append((topic, msg.partition(), msg.key(), msg.value(), msg.timestamp()[1],
                                          msg.headers(), err))
            else:
                log.warning("producing a record to %s failed, skipped: %s", topic, err)
            return
        if msg.topic() in self.changelogs:
            key = (msg.topic(), msg.partition())
            off = msg.offset()
            if off > self.changelog_offsets.get(key, -1):
                self.changelog_offsets[key] = off

    def _delivered_output(self, err: KafkaError | None, msg: Any) -> None:
        """The delivery report of a record that is not a changelog write: only errors matter."""
        if err is not None:
            self._delivered(err, msg)

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int | None) -> None:
        self.sent += 1
        produced = self.produced
        produced[topic] = produced.get(topic, 0) + 1
        if partition is None and not headers and timestamp >= 0 and topic not in self.changelogs:
            try:  # (the common case: an output record, no keyword dict)
                self.producer.produce(topic, value, key, timestamp=timestamp, on_delivery=self._delivered_output)
                return
            except BufferError:
                pass
        kw: dict[str, Any] = {"on_delivery": self._delivered if topic in self.changelogs else self._delivered_output}
        if partition is not None:
            kw["partition"] = partition
        if timestamp >= 0:
            kw["timestamp"] = timestamp
        if headers:
            kw["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, value, key, **kw)
                return
            except BufferError:
                self.producer.poll(0.05)  # queue full: let deliveries drain


    def send_dead_letters(self) -> None:
        """Send the records the broker refused to the dead-letter topic, with the KIP-1034 headers
        (topic and partition: where the record was going; offset -1)."""
        pending, self.dead_letters = self.dead_letters, []
        for topic, partition, key, value, ts, headers, err in pending:
            assert self.dead_letter_topic is not None
            name = "KafkaException"
            hs = [*(headers or []),
                  ("__streams.errors.exception", f"confluent_kafka.{name}: {err.str()}".encode()),
                  ("__streams.errors.message", f"{err.name()}: {err.str()}".encode()),
                  ("__streams.errors.stacktrace", b""),
                  ("__streams.errors.topic", topic.encode()),
                  ("__streams.errors.partition", str(partition).encode()),
                  ("__streams.errors.offset", b"-1")]
            log.warning("producing a record to %s failed (%s), sent to dead-letter topic %s", topic, err,
                        self.dead_letter_topic)
            self.send(self.dead_letter_topic, key, value, ts, hs, None)


# consumer settings that are not the cluster's (what the status reporter's clients leave out)
_NOT_CLIENT_WIDE = {"group.id", "enable.auto.commit", "auto.offset.reset", "partition.assignment.strategy",
                    "isolation.level", "client.id", "group.instance.id", "session.timeout.ms", "max.poll.interval.ms",
                    "fetch.min.bytes", "fetch.wait.max.ms", "group.protocol", "enable.partition.eof"}


class Runtime(StoreQueries):
    def __init__(self, topology: Topology, bootstrap: str, *, state_dir: str | Path | None = None,
                 in_memory_stores: bool = False, commit_interval_ms: int | None = None,
                 punctuate_interval_ms: int = 1000, batch_size: int = 500,
                 consumer_config: dict[str, Any] | None = None, producer_config: dict[str, Any] | None = None,
                 replication_factor: int = -1, processing_guarantee: str = "at_least_once",
                 application_server: str | None = None, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1", report_status: bool = True,
                 status_interval_s: float = DEFAULT_INTERVAL_S, status_kind: str = "streams",
                 status_name: str | None = None, status_figures: dict[str, Any] | None = None,
                 cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES, num_standby_replicas: int = 0,
                 rebalance_protocol: str = "auto", standby_refresh_ms: int = 5000,
                 max_task_idle_ms: int = 0, buffered_records_per_partition: int = 1000,
                 on_changelog_lost: str = "fail") -> None:
        """``rebalance_protocol``: ``"auto"`` (cooperative unless a sub-topology has several
        source topics), ``"cooperative"`` or ``"eager"``. ``num_standby_replicas``: warm copies
        of each stateful task's stores kept by other instances; ``standby_refresh_ms``: how often
        an instance re-reads the group's assignment to decide which standbys it keeps.
        ``max_task_idle_ms`` (Kafka's ``max.task.idle.ms``): a task reading several topics
        processes the record with the smallest timestamp among its inputs' next records; when an
        input has nothing buffered the task waits for it unless it is caught up (0, the default),
        and then also up to this long for new records (> 0); -1 never waits. A task with an input
        buffer holding ``buffered_records_per_partition`` records stops waiting and processes
        what it has, so its buffers stay bounded (Kafka pauses such an input instead; see
        docs/streams.md). ``on_changelog_lost``: ``"fail"`` or ``"reset"`` (see ChangelogReader)."""
        if on_changelog_lost not in ON_CHANGELOG_LOST:
            raise StreamsError(f"on_changelog_lost must be one of {ON_CHANGELOG_LOST}, not {on_changelog_lost!r}")
        self.on_changelog_lost = on_changelog_lost
        if processing_guarantee not in ("at_least_once", "exactly_once", "exactly_once_v2"):
            raise StreamsError(f"processing_guarantee must be at_least_once or exactly_once, not {processing_guarantee!r}")
        self.eos = processing_guarantee != "at_least_once"
        self.cache = RecordCache(cache_max_bytes)  # aggregations' updates, deduplicated until a commit
        self.topology = topology
        self.app_id = topology.app_id
        self.bootstrap = bootstrap
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.gettempdir()) / "riverbed-streams"
        self.in_memory = in_memory_stores
        if commit_interval_ms is None:  # Kafka Streams' defaults
            commit_interval_ms = 100 if self.eos else 30_000
        self.commit_interval = commit_interval_ms / 1000
        self.punctuate_interval = punctuate_interval_ms / 1000
        self.batch_size = batch_size
        self.replication_factor = replication_factor
        self.application_server = application_server
        self._partitions: dict[str, int] = {}
        if rebalance_protocol not in ("auto", "cooperative", "eager"):
            raise StreamsError(f"rebalance_protocol must be auto, cooperative or eager, not {rebalance_protocol!r}")
        if num_standby_replicas < 0:
            raise StreamsError("num_standby_replicas must be 0 or more")
        self.num_standby_replicas = num_standby_replicas
        self.standby_refresh = standby_refresh_ms / 1000
        copartitioned = any(len(sub.sources) > 1 for sub in topology.subtopologies)
        if rebalance_protocol == "auto":
            rebalance_protocol = "eager" if copartitioned else "cooperative"
        elif rebalance_protocol == "cooperative" and copartitioned:
            raise StreamsError("a sub-topology reads several co-partitioned topics: cooperative-sticky assignment "
                               "could split partition p of them over instances; use rebalance_protocol='eager'")
        common = {"bootstrap.servers": bootstrap}
        self._consumer_cfg = {
            **common, "group.id": self.app_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky" if rebalance_protocol == "cooperative" else "range",
            **(consumer_config or {}),
        }
        self.cooperative = "cooperative" in str(self._consumer_cfg["partition.assignment.strategy"])
        if max_task_idle_ms < -1:
            raise StreamsError("max_task_idle_ms must be -1 (never wait), 0 or more")
        self.max_task_idle = max_task_idle_ms / 1000 if max_task_idle_ms >= 0 else -1.0
        # sub-topologies whose tasks read several topics: their records are buffered per input and
        # processed in timestamp order (Kafka Streams' timestamp synchronization)
        self._synced = {sub.id for sub in topology.subtopologies if len(sub.sources) > 1}
        self._buffers: dict[tuple[int, int], _InputBuffer] = {}
        self._caught_up: set[tuple[str, int]] = set()  # partitions whose last fetch reached the end
        self._max_buffered = max(buffered_records_per_partition, 1)
        if self._synced:  # end-of-partition events say an input is caught up
            self._consumer_cfg.setdefault("enable.partition.eof", True)
        if application_server:  # how other instances find this one (interactive queries)
            self._consumer_cfg["client.id"] = f"{self.app_id}@{application_server}"
        self._producer_cfg: dict[str, Any] = {**common, "linger.ms": 5, "acks": "all", "partitioner": "murmur2_random"}
        self._restore_cfg: dict[str, Any] = {**common, "group.id": f"{self.app_id}-restore"}
        if self.eos:
            self._consumer_cfg["isolation.level"] = "read_committed"
            self._restore_cfg["isolation.level"] = "read_committed"
            # Kafka Streams' EOS defaults: a 10 s transaction timeout, one id per process
            self._producer_cfg.update({"transactional.id": f"{self.app_id}-{uuid.uuid4()}",
                                       "transaction.timeout.ms": 10_000, **TRANSACTIONAL_DEFAULTS})
        self._producer_cfg.update(producer_config or {})
        self.globals = GlobalState({}, {}, self._global_engine)  # (replaced when the app runs)
        self._stop = threading.Event()
        self._lock = threading.RLock()  # tasks and stores: the processing thread vs queries
        self.tasks: dict[tuple[int, int], Task] = {}  # active, running tasks
        # assigned tasks whose stores are being restored (input partitions paused)
        self.restoring: dict[tuple[int, int], _Restoring] = {}
        self.standbys: dict[tuple[int, int], dict[str, ChangelogPartition]] = {}  # task -> store -> reader state
        self._standby_dirty = True
        self._standby_at = 0.0
        self._positions: dict[tuple[str, int], int] = {}
        self._consumed = 0
        self._committed_at = (-1, -1)
        self._membership_epoch = 0  # counts this member's rebalance callbacks
        self._members: tuple[int, float, Any] | None = None  # (epoch, when, description): group_members()
        self.running = threading.Event()
        self.restored: dict[str, int] = {}  # store/task -> records restored (the last restore of each)
        self.restore_chunks: dict[str, int] = {}  # store/task -> poll-loop turns the last restore took
        # store/task -> (changelog offsets restored, offsets to restore), updated during restores
        self.restore_progress: dict[str, tuple[int, int]] = {}
        # observability (riverbed.streams.metrics; docs/metrics.md): counters, /metrics, status
        self.stats = streams_metrics.StreamsStats()
        self.metrics_port, self.metrics_host = metrics_port, metrics_host
        self.metrics_url: str | None = None
        self.status_kind, self.status_name = status_kind, status_name or self.app_id
        self.status_figures = status_figures or {}
        self.reporter: StatusReporter | None = None
        if report_status:
            cfg = {k: v for k, v in self._consumer_cfg.items() if k not in _NOT_CLIENT_WIDE}
            self.reporter = StatusReporter(cfg, lambda: [streams_metrics.status_of(self)], interval_s=status_interval_s)

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def _set_state(self, state: str) -> None:
        if state != self.stats.state:
            log.info("application %s: state %s -> %s", self.app_id, self.stats.state, state)
            self.stats.state = state
            if self.reporter is not None:
                self.reporter.wake()

    def run(self) -> None:
        lock = None if self.in_memory else StateDirLock(self.state_dir / self.app_id).acquire()
        http = None
        clean = False
        try:
            if self.metrics_port is not None:
                http = streams_metrics.serve_metrics(self, self.metrics_host, self.metrics_port)
                self.metrics_url = f"{http.url}/metrics"
                log.info("application %s: metrics on %s", self.app_id, self.metrics_url)
            if self.reporter is not None:
                self.reporter.start()
            self._run()
            clean = True
        except BaseException:
            self._set_state("ERROR")
            raise
        finally:
            if clean:
                self._set_state("NOT_RUNNING")
            if self.reporter is not None:  # a clean stop leaves the list; a failed app stays, as ERROR
                self.reporter.stop(clean=clean)
            if http is not None:
                http.stop()
            if lock is not None:
                lock.release()

    def _run(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self._admin = admin
        self._partitions = internal_topics.ensure(self.topology, admin, self.replication_factor)
        server = None
        if self.application_server:
            host, _, port = self.application_server.rpartition(":")
            server = QueryServer(self, host or "127.0.0.1", int(port)).start()
        try:
            self._run_clients()
        finally:
            if server is not None:
                server.stop()

    def _run_clients(self) -> None:
        self.producer = Producer(self._producer_cfg)
        errors = self.topology.errors
        self.collector = _Collector(self.producer, errors.production_error, errors.dead_letter_topic,
                                    set(self.topology.repartition_topics), self.eos)
        self.collector.changelogs = {self.topology.changelog_topic(s) for s in self.topology.store_specs}
        self.collector.produced = self.stats.produced
        self._set_state("REBALANCING")
        if self.eos:
            self.producer.init_transactions(30)
            self.producer.begin_transaction()
        self.globals = GlobalState(self.topology.global_stores, self._restore_cfg, self._global_engine, self.batch_size,
                                   None if self.in_memory else self.state_dir / self.app_id / "global")
        try:
            self.globals.bootstrap()  # global tables are complete before any record is processed
        except BaseException:
            self.globals.close()
            raise
        for name, n in self.globals.restored.items():
            self.restored[f"{name}/global"] = n
        self.reader = ChangelogReader(self._restore_cfg, self.batch_size, progress=self._progress,
                                      on_changelog_lost=self.on_changelog_lost)
        self.consumer = Consumer(self._consumer_cfg)
        topics = [t for sub in self.topology.subtopologies for t in sub.sources]
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        try:
            self._loop()
            self._set_state("PENDING_SHUTDOWN")
            self.commit()
        except BaseException:
            if self.eos:
                try:
                    self.producer.abort_transaction(5)
                except KafkaException as e:
                    log.warning("could not abort the open transaction: %s", e)
            raise
        finally:
            self._close_tasks(list(self.tasks))
            for key in list(self.restoring):
                self._drop_restoring(key)
            for key in list(self.standbys):
                self._drop_standby(key)
            self.consumer.close()
            self.reader.close()
            try:
                self.producer.flush(10)
            except KafkaException as e:  # (a fatal producer error after a failure: keep the first error)
                log.warning("could not flush the producer: %s", e)
            with self._lock:
                self.globals.close()

    def _loop(self) -> None:
        last_commit = last_punct = time.monotonic()
        stats = self.stats
        while not self._stop.is_set():
            if self.globals.specs:
                with self._lock:
                    self.globals.poll()  # keep global tables up to date
            busy = bool(self.restoring)
            # what is already fetched, at once; else wait for the first record only (consume()
            # with a timeout waits for a whole batch, up to the timeout, at a low input rate)
            msgs: list[Any] = self.consumer.consume(self.batch_size, 0)
            if not msgs:
                first = self.consumer.poll(0.01 if busy else 0.1)
                if first is not None:
                    msgs = [first, *self.consumer.consume(self.batch_size - 1, 0)] if self.batch_size > 1 else [first]
            self.running.set()
            started = time.perf_counter()
            rewind: dict[tuple[str, int], int] = {}
            # runs of records of one partition go to their task together (Task.process_messages)
            run: list[Any] = []
            run_tp: tuple[str, int] | None = None
            run_task: Task | None = None
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._caught_up.add((m.topic(), m.partition()))
                        continue
                    if err.fatal():
                        raise StreamsError(f"consumer failed: {err}")
                    log.warning("consumer error: %s", err)
                    continue
                tp = (m.topic(), m.partition())
                if tp == run_tp:
                    run.append(m)
                    continue
                if run:
                    assert run_task is not None and run_tp is not None
                    self._process_run(run_task, run_tp, run)
                    run = []
                run_tp = run_task = None
                topic, part = tp
                sub = self.topology.sub_for_topic[topic]
                task = self.tasks.get((sub.id, part))
                if task is None:
                    if (sub.id, part) in self.restoring and tp not in rewind:
                        rewind[tp] = m.offset()  # fetched before the pause: read it again later
                    continue  # (else revoked between fetch and now)
                if sub.id in self._synced:
                    self._caught_up.discard(tp)
                    buf = self._buffers.get((sub.id, part))
                    if buf is None:
                        buf = self._buffers[(sub.id, part)] = _InputBuffer(list(sub.sources))
                    buf.queues[topic].append(m)
                    continue
                run_tp, run_task = tp, task
                run.append(m)
            if run:
                assert run_task is not None and run_tp is not None
                self._process_run(run_task, run_tp, run)
            for (topic, part), off in rewind.items():
                log.debug("%s-%d: fetched while its task restores, read again from %d", topic, part, off)
                self.consumer.seek(TopicPartition(topic, part, off))
            if self._buffers:
                self._drain_buffers()
            if msgs:
                stats.process_seconds += time.perf_counter() - started
                stats.process_records += len(msgs)
            self.producer.poll(0)
            if self.collector.dead_letters:
                self.collector.send_dead_letters()
            if self.collector.error is not None:
                raise StreamsError(f"producing failed: {self.collector.error}")
            self._advance_restores()
            if self.num_standby_replicas and (self._standby_dirty or time.monotonic() - self._standby_at >= self.standby_refresh):
                self._plan_standbys()
            now = time.monotonic()
            if now - last_punct >= self.punctuate_interval:
                wall = int(time.time() * 1000)
                for t in self.tasks.values():
                    t.punctuate(wall)
                stats.punctuations += 1
                stats.punctuate_seconds += time.monotonic() - now
                self._update_lag()
                last_punct = now
            if now - last_commit >= self.commit_interval:
                if self._consumed != self._committed_at[0] or self.collector.sent != self._committed_at[1]:
                    self.commit()  # (nothing consumed or produced since the last one: nothing to do)
                for sb in self.standbys.values():
                    for cp in sb.values():
                        cp.checkpoint()
                last_commit = time.monotonic()

    def _update_lag(self) -> None:
        """Per input partition: the high watermark librdkafka last saw minus the next offset to
        process (no request: the cached watermarks of fetch responses)."""
        lag: dict[tuple[str, int], int] = {}
        for tp in self.consumer.assignment():
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            pos = self._positions.get((tp.topic, tp.partition))
            if pos is None:
                pos = next((p.offset for p in self.consumer.position([tp]) if p.offset >= 0), None)
            if pos is not None:
                lag[(tp.topic, tp.partition)] = max(high - pos, 0)
        self.stats.lag = lag

    def _process_run(self, task: Task, tp: tuple[str, int], msgs: list[Any]) -> None:
        """Process consecutive records of one input partition (counted once for them all)."""
        with self._lock:
            task.process_messages(tp[0], msgs)
        self._positions[tp] = msgs[-1].offset() + 1
        self._consumed += len(msgs)
        consumed = self.stats.consumed
        consumed[tp] = consumed.get(tp, 0) + len(msgs)

    def _process(self, task: Task, m: Any) -> None:
        topic = m.topic()
        _ts_type, ts = m.timestamp()
        with self._lock:
            task.process(topic, m.key(), m.value(), ts, m.headers(), m.offset())
        self._positions[(topic, task.partition)] = m.offset() + 1
        self._consumed += 1
        consumed = self.stats.consumed
        consumed[(topic, task.partition)] = consumed.get((topic, task.partition), 0) + 1

    def _drain_buffers(self) -> None:
        """Process the buffered records of tasks reading several topics, smallest timestamp
        first across their inputs (Kafka Streams' choice of the next record). An input with
        nothing buffered holds the task back until it is known to be caught up (an end-of-
        partition event since its last record), then for up to ``max_task_idle_ms`` more; with
        -1 the task never waits."""
        now = time.monotonic()
        for key, buf in list(self._buffers.items()):
            task = self.tasks.get(key)
            if task is None:
                del self._buffers[key]
                continue
            while True:
                heads = [(q[0].timestamp()[1], topic) for topic, q in buf.queues.items() if q]
                if not heads:
                    break
                if len(heads) < len(buf.queues):
                    if self.max_task_idle >= 0 and max(len(q) for q in buf.queues.values()) < self._max_buffered:
                        empty = [t for t, q in buf.queues.items() if not q]
                        if not all((t, task.partition) in self._caught_up for t in empty):
                            break  # an input's next records may be on their way: wait for them
                        if self.max_task_idle > 0:
                            if buf.idle_since is None:
                                buf.idle_since = now
                            if now - buf.idle_since < self.max_task_idle:
                                break
                else:
                    buf.idle_since = None
                _ts, topic = min(heads)
                self._process(task, buf.queues[topic].popleft())

    # -- interactive queries ------------------------------------------------------------------
    def query(self, store: str, key: Any) -> Any:
        """The current value of ``key`` in key-value store ``store`` (None: no value), if this
        instance owns the key's partition; else :class:`NotLocalError` naming the owner."""
        if store in self.topology.global_stores:  # every instance holds all of a global table
            with self._lock:
                if store not in self.globals.stores:
                    raise StreamsError("the application has not started")
                return self.globals.stores[store].get(key)
        spec = self.topology.store_specs.get(store)
        if spec is None or spec.window_size_ms is not None or spec.session:
            raise StreamsError(f"{store!r} is not a key-value store of this application")
        sub = next(s for s in self.topology.subtopologies if any(x.name == store for x in s.stores))
        n = max(self._partitions.get(t, 0) for t in sub.sources)
        if n <= 0:
            raise StreamsError("the application has not started")
        raw = spec.key_serde.serialize(key)
        if raw is None:
            raise StreamsError("a key is needed")
        p = partition_for(raw, n)
        with self._lock:
            task = self.tasks.get((sub.id, p))
            if task is not None:
                return task.kv_store(store).get(key)
        raise NotLocalError(store, p, self._owner_of(sub.sources, p))

    def scan(self, store: str, key: Any = None, by_key: bool = False, keys: list[Any] | None = None) -> list[tuple[Any, Any]]:
        """Every entry of ``store`` in this instance's tasks: ``(key, value)`` for key-value
        stores, ``(Windowed(key, Window(start, end)), value)`` for window and session stores (a snapshot,
        taken under the processing lock). ``by_key=True``: only ``key``'s entries; ``keys``: only
        these keys' entries. Key lookups read each task's store by key (a point read in a
        key-value store, a prefix range in a session store; a window store, ordered by window
        start, is walked comparing key bytes, deserializing only the matching entries), whatever
        partitioner placed the key."""
        from .windows import Window, Windowed

        if store in self.topology.global_stores:
            with self._lock:
                if store not in self.globals.stores:
                    raise StreamsError("the application has not started")
                st = self.globals.stores[store]
                if by_key:
                    v = st.get(key)
                    return [] if v is None else [(key, v)]
                return list(st.all())
        spec = self.topology.store_specs.get(store)
        if spec is None:
            raise StreamsError(f"{store!r} is not a store of this application")
        wanted = list(keys) if keys is not None else [key] if by_key else None
        out: list[tuple[Any, Any]] = []
        with self._lock:
            for task in self.tasks.values():
                if store not in task.engines:
                    continue
                if spec.session:
                    ss = task.session_store(store)
                    if wanted is None:
                        out.extend((Windowed(k, w), v) for k, w, v in ss.all())
                        continue
                    for k in wanted:
                        for start, end, raw in ss.find(ss.key_bytes(k), 0, (1 << 63) - 1):
                            out.append((Windowed(k, Window(start, end)), ss.value_serde.deserialize(raw)))
                elif spec.window_size_ms is None:
                    kv = task.kv_store(store)
                    if wanted is None:
                        out.extend(kv.all())
                        continue
                    for k in wanted:
                        v = kv.get(k)
                        if v is not None:
                            out.append((k, v))
                else:
                    size = spec.window_size_ms
                    ws = task.window_store(store)
                    if wanted is None:
                        out.extend((Windowed(k, Window(start, start + size)), v) for k, start, v in ws.all())
                        continue
                    by_bytes = {ws.key_bytes(k): k for k in wanted}
                    for start, kb, raw in ws.starting_between(0, (1 << 63) - 1):
                        k = by_bytes.get(kb, by_bytes)
                        if k is not by_bytes:
                            out.append((Windowed(k, Window(start, start + size)), ws.value_serde.deserialize(raw)))
        return out

    MEMBERS_MAX_AGE_S = 1.0

    def group_members(self) -> Any:
        """The application's consumer group as DescribeConsumerGroups tells it (members, their
        client ids and assignments), for interactive queries that must find the instance owning
        a key. Kept for at most :attr:`MEMBERS_MAX_AGE_S` and forgotten at each of this member's
        rebalance callbacks (an assignment that moved is seen by a rebalance here first), so a
        stream of pull queries costs one DescribeConsumerGroups a second, not one each. Raises
        what the admin client raises."""
        cached = self._members
        now = time.monotonic()
        if cached is not None and cached[0] == self._membership_epoch and now - cached[1] < self.MEMBERS_MAX_AGE_S:
            return cached[2]
        epoch = self._membership_epoch
        desc = self._admin.describe_consumer_groups([self.app_id], request_timeout=10)[self.app_id].result(10)
        self._members = (epoch, now, desc)
        return desc

    def forget_members(self) -> None:
        """Drop the cached group description (an instance it named did not answer)."""
        self._members = None

    def _owner_of(self, topics: Any, partition: int) -> str | None:
        try:
            desc = self.group_members()
        except Exception as e:
            log.warning("cannot describe group %s: %s", self.app_id, e)
            return None
        for m in desc.members:
            for tp in m.assignment.topic_partitions:
                if tp.topic in topics and tp.partition == partition and "@" in (m.client_id or ""):
                    return str(m.client_id).split("@", 1)[1]
        return None

    # -- commit ----------------------------------------------------------------------------
    def commit(self, tasks: list[tuple[int, int]] | None = None) -> None:
        """Flush outputs and changelogs, commit stores with their checkpoints, commit offsets
        (at-least-once); or commit one transaction, then the stores (exactly-once)."""
        started = time.perf_counter()
        keys = list(self.tasks) if tasks is None else tasks
        if tasks is None:  # everything up to here is in this commit
            self._committed_at = (self._consumed, self.collector.sent)
        offsets = [TopicPartition(t, p, off) for (t, p), off in self._positions.items()
                   if (self.topology.sub_for_topic[t].id, p) in keys]
        with self._lock:  # the record cache's updates go out (outputs, changelogs) with this commit
            for key in keys:
                self.tasks[key].flush_cache()
        if self.eos:
            if not self._commit_transaction(offsets):
                self._revive_all("transaction commit fenced")
                return
        else:
            while self.producer.flush(1.0) > 0 or self.collector.dead_letters:
                self.collector.send_dead_letters()
            if self.collector.error is not None:
                raise StreamsError(f"producing failed: {self.collector.error}")
        for key in keys:
            task = self.tasks[key]
            cps = {}
            for name in task.engines:
                off = self.collector.changelog_offsets.get((self.topology.changelog_topic(name), task.partition))
                if off is not None:
                    cps[name] = off + 1
            with self._lock:
                task.commit_stores(cps)
        if offsets and not self.eos:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as e:
                if e.args and isinstance(e.args[0], KafkaError) and e.args[0].code() in _MIGRATED:
                    self._revive_all(f"offset commit failed: {e}")
                    return
                raise StreamsError(f"offset commit failed: {e}") from e
        if tasks is None and self.globals.specs:
            with self._lock:
                self.globals.commit()
        self.stats.committed(time.perf_counter() - started)

    def _commit_transaction(self, offsets: list[TopicPartition]) -> bool:
        """Commit the open transaction with ``offsets``; False when the group fenced this member
        (the transaction is then aborted and a new one begun)."""
        # deliveries first (commit_transaction would wait for them anyway): a record the broker
        # refused makes the transaction abortable; say which, rather than the state error the
        # offsets call would give
        self.producer.flush(30)
        if self.collector.error is not None:
            raise StreamsError(f"producing failed: {self.collector.error}; the transaction is aborted")
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
        except KafkaException as e:
            err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if err is not None and err.code() in _MIGRATED and err.txn_requires_abort() and self.collector.error is None:
                try:
                    self.producer.abort_transaction(30)
                except KafkaException as e2:
                    raise StreamsError(f"transaction commit failed ({e}), and its abort ({e2})") from e2
                self.producer.begin_transaction()
                return False
            # fatal, or abortable for another reason: stop; a restart resumes from the last
            # committed transaction (the store files roll back with it)
            self.producer.poll(0)  # (delivery reports that explain it)
            cause = f" (after producing failed: {self.collector.error})" if self.collector.error else ""
            raise StreamsError(f"transaction commit failed: {e}{cause}") from e
        if self.collector.error is not None:
            raise StreamsError(f"producing failed: {self.collector.error}")
        try:
            self.producer.begin_transaction()
        except KafkaException as e:
            raise StreamsError(f"cannot begin a transaction: {e}") from e
        return True

    # -- rebalance ---------------------------------------------------------------------------
    def _engine(self, spec: StoreSpec, task_id: str) -> Engine:
        if self.in_memory:
            return MemoryEngine()
        return SqliteEngine(self.state_dir / self.app_id / task_id / f"{spec.name}.sqlite")

    def _global_engine(self, spec: GlobalStoreSpec) -> Engine:
        if self.in_memory:
            return MemoryEngine()
        return SqliteEngine(self.state_dir / self.app_id / "global" / f"{spec.name}.sqlite")

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """New partitions: their tasks are created (taking over this instance's standby stores
        for them) and paused; the poll loop restores them (:meth:`_advance_restores`)."""
        log.info("assigned %s%s", [(p.topic, p.partition) for p in parts], " (incremental)" if self.cooperative else "")
        if self.cooperative:
            consumer.incremental_assign(parts)
        else:
            consumer.assign(parts)
        self.stats.rebalances += 1
        self._membership_epoch += 1
        self._set_state("REBALANCING")
        paused: list[TopicPartition] = []
        for tp in parts:
            sub = self.topology.sub_for_topic[tp.topic]
            key = (sub.id, tp.partition)
            if key in self.tasks:
                continue
            r = self.restoring.get(key)
            if r is None:
                r = self._new_restoring(key)
            if not r.task.engines:  # nothing to restore (a stateless task): it runs at once
                del self.restoring[key]
                with self._lock:
                    self.tasks[key] = r.task.start()
                continue
            r.inputs.append(TopicPartition(tp.topic, tp.partition))
            paused.append(TopicPartition(tp.topic, tp.partition))
        if paused:
            consumer.pause(paused)
        self._standby_dirty = True
        if not self.restoring:
            self._set_state("RUNNING")

    def _new_restoring(self, key: tuple[int, int]) -> _Restoring:
        sub = next(x for x in self.topology.subtopologies if x.id == key[0])
        handed = self._promote_standby(key)

        def engine_for(spec: StoreSpec, task_id: str) -> Engine:
            engine = handed.pop(spec.name, None)
            return engine if engine is not None else self._engine(spec, task_id)

        task = Task(sub, key[1], self.collector, engine_for, self.topology.changelog_topic, errors=self.topology.errors,
                    global_stores=self.globals.stores, cache=self.cache)
        task.wall_ms = int(time.time() * 1000)
        r = self.restoring[key] = _Restoring(task)
        return r

    def _revive_all(self, why: str) -> None:
        """The group moved on without this member's last commit (fenced, generation changed): close
        every running task without committing (its stores roll back to their last commit) and
        start it again like a new assignment, its partitions paused, restored, then read from the
        committed offsets. A task that is not this member's any more is dropped when the consumer
        reports its revocation or loss."""
        keys = sorted(self.tasks)
        log.warning("%s: closing %d tasks without committing; they restart from the last commit", why, len(keys))
        self._close_tasks(keys)
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for key in keys:
            r = self._new_restoring(key)
            r.inputs = [TopicPartition(t, key[1]) for t in r.task.sub.sources if (t, key[1]) in assigned]
            r.rewind = True
            for tp in r.inputs:
                self._positions.pop((tp.topic, tp.partition), None)
                self._caught_up.discard((tp.topic, tp.partition))
            if r.inputs:
                self.consumer.pause(r.inputs)

    def _advance_restores(self) -> None:
        """Start the reading of new restores, apply a chunk of changelog records (restores and
        standbys), start the tasks whose stores are all restored and resume their partitions."""
        ready: list[tuple[int, int]] = []
        for key, r in self.restoring.items():
            if r.parts is None:
                r.parts = {}
                for name, engine in r.task.engines.items():
                    cp = ChangelogPartition(name, r.task.task_id, engine, self.topology.changelog_topic(name),
                                            r.task.partition, standby=False)
                    r.parts[name] = cp
                    self.reader.add(cp)
            if all(cp.done for cp in r.parts.values()):
                ready.append(key)
        if self.reader.parts:
            self.reader.poll(0.2, 0.05 if self.reader.restoring else 0.0)
            ready.extend(key for key, r in self.restoring.items()
                         if key not in ready and r.parts is not None and all(cp.done for cp in r.parts.values()))
        for key in ready:
            r = self.restoring.pop(key)
            assert r.parts is not None
            for name, cp in r.parts.items():
                self.restored[f"{name}/{r.task.task_id}"] = cp.applied
                self.restore_chunks[f"{name}/{r.task.task_id}"] = cp.chunks
            if r.rewind and r.inputs:  # read again from the committed offsets
                for tp in self.consumer.committed(r.inputs, timeout=30):
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
            with self._lock:
                self.tasks[key] = r.task.start()
            self.consumer.resume(r.inputs)
            log.info("task %s: running (%d changelog records restored)", r.task.task_id,
                     sum(cp.applied for cp in r.parts.values()))
        if ready and not self.restoring:
            self._set_state("RUNNING")

    def _progress(self, store: str, task_id: str, done: int, total: int) -> None:
        self.restore_progress[f"{store}/{task_id}"] = (done, total)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """Partitions moving away: commit (with exactly-once, the one open transaction, before
        the revocation completes), then close only their tasks."""
        log.info("revoked %s%s", [(p.topic, p.partition) for p in parts], " (incremental)" if self.cooperative else "")
        self._membership_epoch += 1
        if not self._stop.is_set():  # (closing the consumer on stop revokes too)
            self._set_state("REBALANCING")
        keys = {(self.topology.sub_for_topic[tp.topic].id, tp.partition) for tp in parts}
        active = sorted(keys & set(self.tasks))
        if active:
            self.commit(None if self.eos else active)  # one transaction covers every task
            self._close_tasks(active)
        for key in sorted(keys & set(self.restoring)):
            self._drop_restoring(key)
        for tp in parts:
            self._positions.pop((tp.topic, tp.partition), None)
            self._caught_up.discard((tp.topic, tp.partition))
            self.stats.lag.pop((tp.topic, tp.partition), None)
        self._standby_dirty = True

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """Partitions lost (this member was dropped from the group: another may own them now):
        nothing of theirs may be committed. Their tasks close without committing (the stores roll
        back to their last commit); with exactly-once the open transaction is aborted. The member
        rejoins and restores whatever it is assigned again from the stores' checkpoints."""
        log.warning("lost %s", [(p.topic, p.partition) for p in parts])
        self._membership_epoch += 1
        keys = {(self.topology.sub_for_topic[tp.topic].id, tp.partition) for tp in parts}
        if self.eos and self.tasks:
            try:
                self.producer.abort_transaction(30)
            except KafkaException as e:
                raise StreamsError(f"partitions lost and the open transaction could not be aborted: {e}") from e
            self.producer.begin_transaction()
            log.warning("aborted the open transaction: the tasks' work since the last commit is discarded")
            self._close_tasks(sorted(keys & set(self.tasks)))
            if self.tasks:  # (librdkafka loses the whole assignment at once: not expected)
                self._revive_all("the aborted transaction held their work too")
        self._close_tasks(sorted(keys & set(self.tasks)))  # uncommitted store writes roll back
        for key in sorted(keys & set(self.restoring)):
            self._drop_restoring(key)
        for tp in parts:
            self._positions.pop((tp.topic, tp.partition), None)
            self._caught_up.discard((tp.topic, tp.partition))
        self._standby_dirty = True

    def _drop_restoring(self, key: tuple[int, int]) -> None:
        r = self.restoring.pop(key)
        for cp in (r.parts or {}).values():
            self.reader.remove(cp)
            cp.checkpoint()  # what was restored so far is a valid prefix: keep it
        r.task.close()

    def _close_tasks(self, keys: list[tuple[int, int]]) -> None:
        with self._lock:
            for key in keys:
                self._buffers.pop(key, None)  # not processed, so not committed: read again by the next owner
                task = self.tasks.pop(key, None)
                if task is not None:
                    task.close()

    # -- standby replicas ----------------------------------------------------------------------
    def _stateful_tasks(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for sub in self.topology.subtopologies:
            if sub.stores:
                n = max(self._partitions.get(t, 0) for t in sub.sources)
                out.extend((sub.id, p) for p in range(n))
        return out

    def _plan_standbys(self) -> None:
        """Decide which standby tasks this instance keeps, from the group's current assignment
        (AdminClient describe_consumer_groups): the members sorted by member id form a ring, and
        the standbys of a task owned by member *i* are the next ``num_standby_replicas`` members
        after *i*. Every instance computes the same answer from the same description; while the
        group is rebalancing the current standbys are kept."""
        self._standby_at = time.monotonic()
        me = self.consumer.memberid()
        if not me:
            return
        try:
            desc = self._admin.describe_consumer_groups([self.app_id])[self.app_id].result(5)
        except Exception as e:
            log.warning("standbys: cannot describe group %s: %s", self.app_id, e)
            return
        if str(getattr(desc.state, "name", desc.state)).upper() != "STABLE":
            return  # try again on the next loop
        self._standby_dirty = False
        members = sorted(m.member_id for m in desc.members)
        if me not in members:
            return
        owner: dict[tuple[int, int], str] = {}
        for m in desc.members:
            for tp in m.assignment.topic_partitions:
                sub = self.topology.sub_for_topic.get(tp.topic)
                if sub is not None:
                    owner[(sub.id, tp.partition)] = m.member_id
        want: set[tuple[int, int]] = set()
        for key in self._stateful_tasks():
            o = owner.get(key)
            if o is None or o == me or key in self.tasks or key in self.restoring:
                continue
            i = members.index(o)
            ring = [members[(i + j) % len(members)] for j in range(1, len(members))]
            if me in ring[:self.num_standby_replicas]:
                want.add(key)
        for key in sorted(set(self.standbys) - want):
            self._drop_standby(key)
        for key in sorted(want - set(self.standbys)):
            sub = next(x for x in self.topology.subtopologies if x.id == key[0])
            task_id = f"{sub.id}_{key[1]}"
            parts: dict[str, ChangelogPartition] = {}
            for spec in sub.stores:
                cp = ChangelogPartition(spec.name, task_id, self._engine(spec, task_id),
                                        self.topology.changelog_topic(spec.name), key[1], standby=True)
                parts[spec.name] = cp
                self.reader.add(cp)
            self.standbys[key] = parts
            log.info("standby task %s: keeping %s warm", task_id, sorted(parts))

    def _drop_standby(self, key: tuple[int, int]) -> None:
        for cp in self.standbys.pop(key).values():
            self.reader.remove(cp)
            cp.checkpoint()
            cp.engine.close()
        log.info("standby task %d_%d: dropped", *key)

    def _promote_standby(self, key: tuple[int, int]) -> dict[str, Engine]:
        """The standby stores of a task just assigned here, checkpointed at the position they
        reached (the restore then reads only the changelog's tail); empty without a standby."""
        sb = self.standbys.pop(key, None)
        if sb is None:
            return {}
        for cp in sb.values():
            self.reader.remove(cp)
            cp.checkpoint()
        log.info("task %d_%d: taking over its standby stores at changelog offsets %s", *key,
                 {n: cp.position for n, cp in sb.items()})
        return {n: cp.engine for n, cp in sb.items()}


# commit errors saying the group moved on without this member (Kafka Streams' TaskMigratedException)
_MIGRATED = frozenset({KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.FENCED_INSTANCE_ID,
                       KafkaError.REBALANCE_IN_PROGRESS})


class _InputBuffer:
    """The fetched, not yet processed records of a task reading several topics, per topic."""

    def __init__(self, topics: list[str]) -> None:
        self.queues: dict[str, deque[Any]] = {t: deque() for t in topics}
        self.idle_since: float | None = None  # since when an input has had nothing buffered


class _Restoring:
    """An assigned task whose stores are being restored; its input partitions are paused."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.inputs: list[TopicPartition] = []
        self.rewind = False  # seek the inputs to their committed offsets before resuming
        self.parts: dict[str, ChangelogPartition] | None = None  # None: reading not started yet
