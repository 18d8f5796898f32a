"""The registry's state kept in the compacted `_schemas` topic, through confluent-kafka only.

A reader thread tails partition 0 of the topic from the beginning and folds every record into
the in-memory `State`. A change is planned against that state under the writer lock, produced
with acks=all, and answered only once the reader has applied it: what a client was told is in
the log, and a restart (or another instance) replays to the same state.

One instance writes at a time per process (the writer lock). Several registry processes on one
`_schemas` topic would need leader election, which riverbed does not do yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from . import errors
from .state import Record, State, decode, encode

log = logging.getLogger("riverbed.registry")
T = TypeVar("T")


class SchemaLog:
    def __init__(self, client_config: dict[str, Any], topic: str = "_schemas", timeout_s: float = 30.0) -> None:
        self.client_config = dict(client_config)
        self.topic = topic
        self.timeout_s = timeout_s
        self.state = State()
        self.lock = threading.Lock()  # guards state
        self.applied = threading.Condition(self.lock)
        self.next_offset = 0  # offset after the last record applied
        self.write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._ensure_topic()
        self._producer = Producer({**self.client_config, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
        consumer = Consumer({**self.client_config, "group.id": "riverbed-registry-reader", "enable.auto.commit": False, "enable.partition.eof": False, "fetch.wait.max.ms": 50})
        consumer.assign([TopicPartition(self.topic, 0, 0)])
        _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=self.timeout_s)
        self._thread = threading.Thread(target=self._read, args=(consumer,), name="registry-reader", daemon=True)
        self._thread.start()
        self.wait_applied(high, self.timeout_s)
        log.info("schema registry state loaded from %s: %d records, max id %d", self.topic, high, max(self.state.max_ids.values(), default=0))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None  # librdkafka's handle goes with the last reference

    def _ensure_topic(self) -> None:
        admin = AdminClient(self.client_config)
        md = admin.list_topics(timeout=self.timeout_s)
        if self.topic in md.topics:
            return
        rf = min(3, len(md.brokers))
        fut = admin.create_topics([NewTopic(self.topic, 1, rf, config={"cleanup.policy": "compact"})])[self.topic]
        try:
            fut.result(self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def _read(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                # poll() returns as soon as a record arrives; consume(n, timeout) would wait the
                # whole timeout for n records, and every write waits for its record to be read
                first = consumer.poll(0.1)
                if first is None:
                    continue
                msgs = [first, *consumer.consume(499, 0)]
                with self.lock:
                    for m in msgs:
                        if m.error() is not None:
                            log.warning("reading %s: %s", self.topic, m.error())
                            continue
                        rec = decode(m.key(), m.value())
                        if rec is None:
                            log.warning("skipping a record of %s at offset %d that is not a registry record", self.topic, m.offset())
                        else:
                            try:
                                self.state.apply(*rec)
                            except (KeyError, TypeError, ValueError) as exc:
                                log.warning("skipping a malformed record of %s at offset %d: %s", self.topic, m.offset(), exc)
                        self.next_offset = (m.offset() or 0) + 1
                    self.applied.notify_all()
        finally:
            consumer.close()

    # -- reading and writing ---------------------------------------------------------------------

    def wait_applied(self, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.applied:
            while self.next_offset < offset:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.timeout_error(f"the registry's reader did not reach offset {offset} of {self.topic}")
                self.applied.wait(left)

    def read(self, fn: Callable[[State], T]) -> T:
        with self.lock:
            return fn(self.state)

    def change(self, plan: Callable[[State], tuple[T, list[Record]]]) -> T:
        """Plan a change on the current state, write its records, wait until applied."""
        with self.write_lock:
            with self.lock:
                result, records = plan(self.state)
            if records:
                self.write(records)
            return result

    def write(self, records: list[Record]) -> None:
        assert self._producer is not None
        offsets: list[int] = []
        failures: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                offsets.append(msg.offset())

        for rec in records:
            key, value = encode(rec)
            self._producer.produce(self.topic, key=key, value=value, partition=0, on_delivery=delivered)
        left = self._producer.flush(self.timeout_s)
        if failures or left:
            raise errors.store_error(f"could not write to {self.topic}: {failures or 'timed out'}")
        self.wait_applied(max(offsets) + 1, self.timeout_s)
