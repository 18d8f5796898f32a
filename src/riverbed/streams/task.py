"""A task: one partition of one sub-topology, with its stores and stream time.

The task is where a raw Kafka record enters the topology (deserialize, extract the timestamp,
advance stream time, walk the nodes) and where outputs and changelog writes leave it, through a
:class:`Collector` (the Kafka producer in the runtime, lists in the test driver).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Protocol

from .cache import RecordCache
from .nodes import Fused, Node, SourceNode, fuse
from .processor import ProcessNode, Schedule, fire
from .records import ProductionError, Record, StreamsError
from .sessions import SessionStore
from .stores import Engine, KeyValueStore, WindowStore
from .topology import DeadLetterContext, ErrorPolicy, StoreSpec, SubTopology

log = logging.getLogger("riverbed.streams")


class DroppedRecord(Exception):
    """Why the DSL dropped a record (the dead-letter record's ``__streams.errors.exception``)."""


class Collector(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int | None) -> None: ...


class Task:
    def __init__(self, sub: SubTopology, partition: int, collector: Collector,
                 engine_for: Callable[[StoreSpec, str], Engine], changelog_topic: Callable[[str], str],
                 logging_enabled: bool = True, errors: ErrorPolicy | None = None,
                 global_stores: dict[str, KeyValueStore] | None = None, cache: RecordCache | None = None) -> None:
        self.sub = sub
        # the record cache (None: off); aggregations write through it (riverbed.streams.cache)
        self.cache = cache if cache is not None and cache.max_bytes > 0 else None
        self.globals = global_stores or {}
        self.errors = errors or ErrorPolicy()
        self.partition = partition
        self.task_id = f"{sub.id}_{partition}"
        self.collector = collector
        self.stream_time = -1
        self.wall_ms = 0
        self.metrics: dict[str, int] = {}
        self._node_state: dict[int, dict[str, Any]] = {}
        self._changelog_topic = changelog_topic
        self._current_ts = 0
        # the input record being processed, as bytes (dead letters of later stages); None in punctuation
        self._raw: tuple[str, bytes | None, bytes | None, int, list[tuple[str, bytes]] | None, int] | None = None
        self.engines: dict[str, Engine] = {}
        self._kv: dict[str, KeyValueStore] = {}
        self._win: dict[str, WindowStore] = {}
        self._ses: dict[str, SessionStore] = {}
        for spec in sub.stores:
            engine = engine_for(spec, self.task_id)
            self.engines[spec.name] = engine
            logfn = self._logger(spec.name) if logging_enabled else None
            if spec.session:
                self._ses[spec.name] = SessionStore(spec.name, engine, spec.key_serde, spec.value_serde, logfn)
            elif spec.window_size_ms is None:
                self._kv[spec.name] = KeyValueStore(spec.name, engine, spec.key_serde, spec.value_serde, logfn)
                self._kv[spec.name].cache, self._kv[spec.name].task_id = self.cache, self.task_id
            else:
                ws = WindowStore(spec.name, engine, spec.window_size_ms, spec.key_serde, spec.value_serde, logfn,
                                 timestamped=spec.timestamped)
                ws.cache, ws.task_id = self.cache, self.task_id
                self._win[spec.name] = ws
        self.schedules: list[Schedule] = []
        self._processors = [n for n in sub.nodes if isinstance(n, ProcessNode)]
        self._interceptors = tuple(getattr(sub, "interceptors", ()))
        # per source topic: the fused stateless steps under it (nodes.fuse), when the record needs
        # no Record around its walk (no interceptors); a source's timestamp extractor runs per
        # record before them (``_extract``)
        self._fused: dict[str, Fused] = {}
        if not self._interceptors:
            self._fused = {t: fuse(src) for t, src in sub.sources.items()}

    def start(self) -> Task:
        """Initialize the user processors (after the stores are restored)."""
        for n in self._processors:
            n.init_task(self)
        return self

    # -- used by nodes ------------------------------------------------------------------------
    def _logger(self, store: str) -> Callable[[bytes, bytes | None], None]:
        topic = self._changelog_topic(store)

        def logfn(key: bytes, value: bytes | None) -> None:
            self.collector.send(topic, key, value, self._current_ts, None, self.partition)

        return logfn

    def kv_store(self, name: str) -> KeyValueStore:
        return self._kv[name]

    def window_store(self, name: str) -> WindowStore:
        return self._win[name]

    def session_store(self, name: str) -> SessionStore:
        return self._ses[name]

    def store(self, name: str) -> Any:
        """The store's typed view: KeyValueStore, WindowStore or SessionStore."""
        for d in (self._kv, self._win, self._ses):
            if name in d:
                return d[name]
        raise KeyError(name)

    def node_state(self, node: Node) -> dict[str, Any]:
        return self._node_state.setdefault(id(node), {})

    def send(self, topic: str, key: bytes | None, value: bytes | None, ts: int,
             headers: list[tuple[str, bytes]] | None, internal: bool = False) -> None:
        """Send an output record (through the interceptors); a send refused at once (the record
        is too large for the client, the topic is unknown, ...) goes to the production error
        policy (internal topics: always ``fail``)."""
        for ic in self._interceptors:
            headers = ic.on_send(topic, headers)
        try:
            self.collector.send(topic, key, value, ts, headers, None)
        except ProductionError:
            raise
        except Exception as e:
            if internal:
                raise ProductionError(f"producing to internal topic {topic} failed: {e!r}") from e
            self.production_failed("production", topic, e)

    def production_failed(self, stage: str, topic: str, e: Exception) -> None:
        """Kafka's ProductionExceptionHandler: ``fail`` stops the app, ``skip`` logs and counts
        (``production_errors``), ``dead_letter`` also sends the input record being processed (its
        bytes, as the other handlers' dead letters) with the error in the KIP-1034 headers."""
        policy = self.errors.production_error
        what = f"{stage} of an output record to {topic}"
        if policy == "fail":
            raise ProductionError(f"task {self.task_id}: {what} failed: {e!r}") from e
        self.metrics["production_errors"] = self.metrics.get("production_errors", 0) + 1
        raw = self._raw
        if policy == "dead_letter":
            if raw is None:  # (a punctuation's output: no input record)
                raw = (topic, None, None, self._current_ts, None, -1)
            try:
                self._dead_letter(e, *raw)
            except Exception as e2:
                raise ProductionError(f"task {self.task_id}: {what} failed ({e!r}), and so did sending the input "
                                      f"record to the dead-letter topic: {e2!r}") from e2
            log.warning("task %s: %s failed, input record sent to dead-letter topic %s: %r", self.task_id, what,
                        self.errors.dead_letter_topic, e)
        else:
            log.warning("task %s: %s failed, skipped: %r", self.task_id, what, e)

    def send_to(self, topic: str, key: bytes | None, value: bytes | None, ts: int,
                headers: list[tuple[str, bytes]] | None, partition: int) -> None:
        """Send to an explicit partition (foreign-key join responses go back to the left row's)."""
        self.collector.send(topic, key, value, ts, headers, partition)

    def global_store(self, name: str) -> KeyValueStore:
        return self.globals[name]

    def skip(self, rec: Record, why: str, node: Node | None = None) -> None:
        self.metrics["skipped_records"] = self.metrics.get("skipped_records", 0) + 1
        if node is not None and self.drop_to_dead_letter(node, why):
            return
        log.warning("task %s: skipped record %s-%d@%d: %s", self.task_id, rec.topic, rec.partition, rec.offset, why)

    def drop_to_dead_letter(self, node: Node, why: str) -> bool:
        """A record the DSL drops (no key, late) goes to the dead-letter topic when its node's
        ``on_error`` is ``dead_letter`` (the input record's bytes, a ``DroppedRecord`` error in
        the KIP-1034 headers). Returns whether it went."""
        policy = node.drop_policy or self.errors.dropped_records
        if policy != "dead_letter" or self._raw is None:
            return False
        self.metrics["dead_lettered_records"] = self.metrics.get("dead_lettered_records", 0) + 1
        dlq = self._dead_letter(DroppedRecord(why), *self._raw)
        topic, _k, _v, _ts, _h, offset = self._raw
        log.warning("task %s: record %s-%d@%d dropped (%s), sent to dead-letter topic %s", self.task_id, topic,
                    self.partition, offset, why, dlq)
        return True

    # -- entry points ---------------------------------------------------------------------------
    def process_messages(self, topic: str, msgs: list[Any]) -> None:
        """Process consumed records (confluent-kafka messages, all of ``topic`` and this task's
        partition) in order: what :meth:`process` does for each, with the per-record work cut to
        the deserializers, the timestamp extractor (if any), the fused steps (``nodes.fuse``) and
        the output's serializers."""
        fused = self._fused.get(topic)
        if fused is None:
            for m in msgs:
                self.process(topic, m.key(), m.value(), m.timestamp()[1], m.headers(), m.offset())
            return
        src: SourceNode = self.sub.sources[topic]
        key_de = src.key_serde.deserialize
        value_de = src.value_serde.deserialize
        dh = src.value_deserialize_with_headers
        extractor = src.extractor
        # an extractor's record-less form (``fields(key, value, ts, headers, partition, offset,
        # partition_time) -> ms``, same contract): no Record per input record
        fields = getattr(extractor, "fields", None)
        partition = self.partition
        for m in msgs:
            key, value, ts, headers, offset = m.key(), m.value(), m.timestamp()[1], m.headers(), m.offset()
            if ts < 0 and extractor is None:  # (the general path says why it is skipped)
                self.process(topic, key, value, ts, headers, offset)
                continue
            self._raw = (topic, key, value, ts, headers, offset)
            try:
                k = key_de(key)
                v = value_de(value) if dh is None else dh(value, headers)
            except Exception as e:
                self._failed("deserialization", src.on_error, e, topic, key, value, ts, headers, offset)
                continue
            if fields is not None:
                try:
                    t = int(fields(k, v, ts, headers, partition, offset, self.stream_time))
                except ProductionError:
                    raise
                except Exception as e:
                    self._failed("processing", self.errors.on_processing_error, e, topic, key, value, ts, headers, offset)
                    continue
                if t < 0:
                    self._skip_negative(src, Record(k, v, t, headers, topic, partition, offset))
                    continue
            elif extractor is not None:
                rec = self._extract(src, extractor, k, v, ts, headers, topic, offset, key, value)
                if rec is None:
                    continue
                k, v, t = rec.key, rec.value, rec.timestamp
            else:
                t = ts
            if t > self.stream_time:
                self.stream_time = t
            self._current_ts = t
            try:
                fused(self, k, v, t, headers, topic, offset)
                if self.schedules:  # (a processor downstream may schedule while processing)
                    fire(self.schedules, "stream_time", self.stream_time)
            except ProductionError:
                raise
            except Exception as e:
                self._failed("processing", self.errors.on_processing_error, e, topic, key, value, ts, headers, offset)

    def _extract(self, src: SourceNode, extractor: Callable[[Record, int], int], k: Any, v: Any, ts: int,
                 headers: list[tuple[str, bytes]] | None, topic: str, offset: int, key: bytes | None,
                 value: bytes | None) -> Record | None:
        """Run a source's timestamp extractor on a deserialized record (the fused path): the
        Record with its event time, or None when the record is skipped (a negative timestamp)
        or the extractor raised (the processing error policy), as the general path does."""
        rec = Record(k, v, ts, headers, topic, self.partition, offset)
        try:
            rec.timestamp = int(extractor(rec, self.stream_time))
        except ProductionError:
            raise
        except Exception as e:
            self._failed("processing", self.errors.on_processing_error, e, topic, key, value, ts, headers, offset)
            return None
        if rec.timestamp < 0:
            self._skip_negative(src, rec)
            return None
        return rec

    def _skip_negative(self, src: SourceNode, rec: Record) -> None:
        """Skip a record whose (extracted) timestamp is negative (a dead letter, if the source says
        so; an error doing that goes to the processing error policy, as in the general path)."""
        try:
            self.skip(rec, f"invalid (negative) timestamp {rec.timestamp}", src)
        except ProductionError:
            raise
        except Exception as e:
            raw = self._raw
            assert raw is not None
            self._failed("processing", self.errors.on_processing_error, e, *raw)

    def process(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
                headers: list[tuple[str, bytes]] | None = None, offset: int = -1) -> None:
        src: SourceNode = self.sub.sources[topic]
        self._raw = (topic, key, value, timestamp, headers, offset)
        try:
            k = src.key_serde.deserialize(key)
            dh = src.value_deserialize_with_headers
            v = src.value_serde.deserialize(value) if dh is None else dh(value, headers)
        except Exception as e:
            self._failed("deserialization", src.on_error, e, topic, key, value, timestamp, headers, offset)
            return
        fused = self._fused.get(topic)
        if fused is not None and (timestamp >= 0 or src.extractor is not None):
            t = timestamp
            if src.extractor is not None:
                extracted = self._extract(src, src.extractor, k, v, timestamp, headers, topic, offset, key, value)
                if extracted is None:
                    return
                k, v, t = extracted.key, extracted.value, extracted.timestamp
            if t > self.stream_time:
                self.stream_time = t
            self._current_ts = t
            try:
                fused(self, k, v, t, headers, topic, offset)
                if self.schedules:
                    fire(self.schedules, "stream_time", self.stream_time)
            except ProductionError:
                raise
            except Exception as e:
                self._failed("processing", self.errors.on_processing_error, e, topic, key, value, timestamp, headers,
                             offset)
            return
        rec = Record(k, v, timestamp, headers, topic, self.partition, offset)
        try:
            if src.extractor is not None:
                rec.timestamp = int(src.extractor(rec, self.stream_time))
            if rec.timestamp < 0:
                self.skip(rec, f"invalid (negative) timestamp {rec.timestamp}", src)
                return
            if rec.timestamp > self.stream_time:
                self.stream_time = rec.timestamp
            self._current_ts = rec.timestamp
            if self._interceptors:
                with ExitStack() as scope:
                    for ic in self._interceptors:
                        scope.enter_context(ic.around(rec, self.task_id))
                    src.forward(self, rec)
            else:
                src.forward(self, rec)
            if self.schedules:
                fire(self.schedules, "stream_time", self.stream_time)
        except ProductionError:
            raise
        except Exception as e:
            self._failed("processing", self.errors.on_processing_error, e, topic, key, value, timestamp, headers, offset)

    def _failed(self, stage: str, policy: str, e: Exception, topic: str, key: bytes | None, value: bytes | None,
                timestamp: int, headers: list[tuple[str, bytes]] | None, offset: int) -> None:
        """Apply an error policy: fail (raise), skip (log, count) or dead_letter (log, count, and
        send the input record's bytes with Kafka Streams' ``__streams.errors.*`` headers)."""
        where = f"{topic}-{self.partition}@{offset}"
        if policy == "fail":
            raise StreamsError(f"{stage} of {where} failed: {e!r}") from e
        self.metrics[f"{stage}_errors"] = self.metrics.get(f"{stage}_errors", 0) + 1
        if policy == "dead_letter":
            dlq = self._dead_letter(e, topic, key, value, timestamp, headers, offset, stage)
            log.warning("task %s: %s of %s failed, sent to dead-letter topic %s: %r", self.task_id, stage, where, dlq, e)
        else:
            log.warning("task %s: %s of %s failed, skipped: %r", self.task_id, stage, where, e)

    def forward_flushed(self, node: Node, rec: Record, write: Callable[[], None]) -> None:
        """A record cache entry leaves the cache: write it to its store and changelog, then
        forward it downstream of ``node`` (the error policy applies to what downstream raises;
        the input record is long gone, so ``dead_letter`` logs and counts as ``skip`` does)."""
        saved, self._current_ts = self._current_ts, rec.timestamp
        try:
            write()
            node.forward(self, rec)
        except Exception as e:
            policy = self.errors.on_processing_error
            where = f"{rec.topic}-{self.partition}@{rec.offset}"
            if policy == "fail":
                raise StreamsError(f"processing of {where} (a cached update of {node.name}) failed: {e!r}") from e
            self.metrics["processing_errors"] = self.metrics.get("processing_errors", 0) + 1
            log.warning("task %s: processing of %s (a cached update of %s) failed, skipped: %r", self.task_id, where, node.name, e)
        finally:
            self._current_ts = saved

    def flush_cache(self) -> None:
        """Write and forward this task's cached updates (before a commit)."""
        if self.cache is not None:
            self.cache.flush(self.task_id)

    def _dead_letter(self, e: BaseException, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
                     headers: list[tuple[str, bytes]] | None, offset: int, stage: str = "processing") -> str:
        """Send a record to the dead-letter topic with Kafka Streams' KIP-1034 headers (or those
        the app's ``dead_letter_headers`` builds)."""
        dlq = self.errors.dead_letter_topic
        assert dlq is not None  # checked when the topology is built
        if self.errors.dead_letter_headers is not None:
            ctx = DeadLetterContext(stage, e, topic, self.partition, offset, timestamp, headers)  # type: ignore[arg-type]
            self.collector.send(dlq, key, value, timestamp, self.errors.dead_letter_headers(ctx), None)
            return dlq
        err_headers = [
            ("__streams.errors.exception", f"{type(e).__module__}.{type(e).__qualname__}: {e}".encode()),
            ("__streams.errors.message", str(e).encode()),
            ("__streams.errors.stacktrace", "".join(traceback.format_exception(e)).encode()),
            ("__streams.errors.topic", topic.encode()),
            ("__streams.errors.partition", str(self.partition).encode()),
            ("__streams.errors.offset", str(offset).encode()),
        ]
        self.collector.send(dlq, key, value, timestamp, [*(headers or []), *err_headers], None)
        return dlq

    def punctuate(self, wall_ms: int) -> None:
        self._raw = None
        self.wall_ms = wall_ms
        self._current_ts = max(self.stream_time, 0)
        for node in self.sub.stateful:
            node.punctuate(self)
        if self.schedules:
            fire(self.schedules, "wall_clock", wall_ms)

    def commit_stores(self, checkpoints: dict[str, int]) -> None:
        for name, engine in self.engines.items():
            engine.commit(checkpoints.get(name))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.drop(self.task_id)
        for n in self._processors:
            n.close_task(self)
        for engine in self.engines.values():
            engine.close()
