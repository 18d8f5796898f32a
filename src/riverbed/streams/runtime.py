"""The runtime: runs a topology against a Kafka cluster through confluent-kafka.

One consumer in the group ``application.id`` (range assignment, so partition *p* of every
source topic of a sub-topology lands on the same instance), one task per (sub-topology,
partition), one producer for outputs, repartition records and changelog writes.

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
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from riverbed.client.factories import TRANSACTIONAL_DEFAULTS
from riverbed.client.status import DEFAULT_INTERVAL_S, StatusReporter

from . import internal_topics
from . import metrics as streams_metrics
from .global_state import GlobalState
from .global_table import GlobalStoreSpec
from .query import NotLocalError, QueryServer, partition_for
from .records import StreamsError
from .restore import ON_CHANGELOG_LOST, restore_task
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

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int | None) -> None:
        self.sent += 1
        self.produced[topic] = self.produced.get(topic, 0) + 1
        kw: dict[str, Any] = {"on_delivery": self._delivered}
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


class Runtime:
    def __init__(self, topology: Topology, bootstrap: str, *, state_dir: str | Path | None = None,
                 in_memory_stores: bool = False, commit_interval_ms: int | None = None,
                 punctuate_interval_ms: int = 1000, batch_size: int = 500,
                 consumer_config: dict[str, Any] | None = None, producer_config: dict[str, Any] | None = None,
                 replication_factor: int = -1, processing_guarantee: str = "at_least_once",
                 application_server: str | None = None, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1", report_status: bool = True,
                 status_interval_s: float = DEFAULT_INTERVAL_S, status_kind: str = "streams",
                 status_name: str | None = None, status_figures: dict[str, Any] | None = None,
                 on_changelog_lost: str = "fail") -> None:
        if on_changelog_lost not in ON_CHANGELOG_LOST:
            raise StreamsError(f"on_changelog_lost must be one of {ON_CHANGELOG_LOST}, not {on_changelog_lost!r}")
        self.on_changelog_lost = on_changelog_lost
        if processing_guarantee not in ("at_least_once", "exactly_once", "exactly_once_v2"):
            raise StreamsError(f"processing_guarantee must be at_least_once or exactly_once, not {processing_guarantee!r}")
        self.eos = processing_guarantee != "at_least_once"
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
        common = {"bootstrap.servers": bootstrap}
        self._consumer_cfg = {
            **common, "group.id": self.app_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range", **(consumer_config or {}),
        }
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
        self.tasks: dict[tuple[int, int], Task] = {}
        self._positions: dict[tuple[str, int], int] = {}
        self._consumed = 0
        self._committed_at = (-1, -1)
        self.running = threading.Event()
        self.restored: dict[str, int] = {}  # store/task -> records restored
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
        self.consumer = Consumer(self._consumer_cfg)
        topics = [t for sub in self.topology.subtopologies for t in sub.sources]
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
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
            self.consumer.close()
            try:
                self.producer.flush(10)
            except KafkaException as e:  # (a fatal producer error after a failure: keep the first error)
                log.warning("could not flush the producer: %s", e)
            with self._lock:
                self.globals.close()

    def _loop(self) -> None:
        last_commit = last_punct = time.monotonic()
        stats = self.stats
        consumed = stats.consumed
        while not self._stop.is_set():
            if self.globals.specs:
                with self._lock:
                    self.globals.poll()  # keep global tables up to date
            msgs: list[Any] = self.consumer.consume(self.batch_size, 0.1)
            self.running.set()
            started = time.perf_counter()
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise StreamsError(f"consumer failed: {err}")
                    log.warning("consumer error: %s", err)
                    continue
                topic, part = m.topic(), m.partition()
                sub = self.topology.sub_for_topic[topic]
                task = self.tasks.get((sub.id, part))
                if task is None:  # revoked between fetch and now
                    continue
                _ts_type, ts = m.timestamp()
                with self._lock:
                    task.process(topic, m.key(), m.value(), ts, m.headers(), m.offset())
                self._positions[(topic, part)] = m.offset() + 1
                self._consumed += 1
                consumed[(topic, part)] = consumed.get((topic, part), 0) + 1
            if msgs:
                stats.process_seconds += time.perf_counter() - started
                stats.process_records += len(msgs)
            self.producer.poll(0)
            if self.collector.dead_letters:
                self.collector.send_dead_letters()
            if self.collector.error is not None:
                raise StreamsError(f"producing failed: {self.collector.error}")
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

    def _owner_of(self, topics: Any, partition: int) -> str | None:
        try:
            desc = self._admin.describe_consumer_groups([self.app_id])[self.app_id].result(10)
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
        if self.eos:
            self._commit_transaction(offsets)
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
                raise StreamsError(f"offset commit failed: {e}") from e
        if tasks is None and self.globals.specs:
            with self._lock:
                self.globals.commit()
        self.stats.committed(time.perf_counter() - started)

    def _commit_transaction(self, offsets: list[TopicPartition]) -> None:
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
            # abortable or fatal alike: stop; a restart resumes from the last committed
            # transaction (the store files roll back with it)
            self.producer.poll(0)  # (delivery reports that explain it)
            cause = f" (after producing failed: {self.collector.error})" if self.collector.error else ""
            raise StreamsError(f"transaction commit failed: {e}{cause}") from e
        if self.collector.error is not None:
            raise StreamsError(f"producing failed: {self.collector.error}")
        try:
            self.producer.begin_transaction()
        except KafkaException as e:
            raise StreamsError(f"cannot begin a transaction: {e}") from e

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
        log.info("assigned %s", [(p.topic, p.partition) for p in parts])
        self.stats.rebalances += 1
        self._set_state("REBALANCING")
        for tp in parts:
            sub = self.topology.sub_for_topic[tp.topic]
            key = (sub.id, tp.partition)
            if key not in self.tasks:
                task = Task(sub, tp.partition, self.collector, self._engine, self.topology.changelog_topic,
                            errors=self.topology.errors, global_stores=self.globals.stores)
                task.wall_ms = int(time.time() * 1000)
                for store, n in restore_task(task, self.topology.changelog_topic, self._restore_cfg, self.batch_size,
                                             progress=self._progress,
                                             on_changelog_lost=self.on_changelog_lost).items():
                    self.restored[f"{store}/{task.task_id}"] = n
                task.start()
                self.tasks[key] = task
        self._set_state("RUNNING")

    def _progress(self, store: str, task_id: str, done: int, total: int) -> None:
        self.restore_progress[f"{store}/{task_id}"] = (done, total)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("revoked %s", [(p.topic, p.partition) for p in parts])
        if not self._stop.is_set():  # (closing the consumer on stop revokes too)
            self._set_state("REBALANCING")
        keys = sorted({(self.topology.sub_for_topic[tp.topic].id, tp.partition) for tp in parts} & set(self.tasks))
        if keys:
            self.commit(None if self.eos else keys)  # one transaction covers every task
            self._close_tasks(keys)
        for tp in parts:
            self._positions.pop((tp.topic, tp.partition), None)
            self.stats.lag.pop((tp.topic, tp.partition), None)

    def _close_tasks(self, keys: list[tuple[int, int]]) -> None:
        with self._lock:
            for key in keys:
                task = self.tasks.pop(key, None)
                if task is not None:
                    task.close()
