"""Sagas on Kafka: an orchestrator with durable state, idempotent participants, and
choreography helpers.

``SagaOrchestrator``: saga instances live in a compacted topic (``<saga>.saga-state``, key =
saga id, value = SagaState JSON). Each transition — the new state, the command it sends and
the consumed reply's offset — is written in one Kafka transaction, so a crash never loses or
repeats a transition. On start the orchestrator reads the state topic, re-sends the awaited
command of every unfinished saga (participants deduplicate by idempotency key) and re-arms
the stored deadlines (wall-clock times, so they survive a restart).

``SagaParticipant``: consumes its command topic; each command's handler runs once per
idempotency key: the key and its reply are recorded in ``<topic>.processed`` (compacted) in the
same transaction as the reply, and a repeated command gets the recorded reply again. A handler's
own side effects are outside that transaction: if the process dies after the handler ran and
before the commit, the handler runs again after the restart (make it idempotent on
``data["idempotencyKey"]`` in the service's own store when that matters).

``Reactor`` (choreography): consume events, emit events (including compensating ones), with the
consumed offsets in the same transaction.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverbed import client
from riverbed.client import ClusterSettings

from . import saga_state as sm
from .envelope import Envelope
from .errors import InvalidEnvelope, PatternsError
from .txn import TransactionStuck, bounded

log = logging.getLogger("riverbed.patterns.sagas")


class StepFailed(PatternsError):
    """Raised by a participant's handler: the step failed (the reply says so, with the reason)."""


class NoReply(PatternsError):
    """Raised by a participant's handler to drop a command without replying (fault injection:
    a participant that never answers)."""


_abandoned: list[Any] = []  # producers replaced after a stuck call (kept from the destructor)


class _Transactional:
    """A consume-transform-produce loop's recovery: after a failed transaction, abort it (or make
    a new producer when the error is fatal) and rewind the consumer to its committed offsets
    before the next poll, so the batch is read again — never lost, never applied twice."""

    txn_timeout = 10.0  # seconds a commit or abort may take before the loop recovers

    def _init_txn(self, settings: ClusterSettings, transactional_id: str, txn_timeout: float | None = None) -> None:
        if txn_timeout is not None:
            self.txn_timeout = txn_timeout
        self._txn_settings, self._txn_id = settings, transactional_id
        self._producer = client.producer(settings, **{"transactional.id": transactional_id, "linger.ms": 1})
        self._producer.init_transactions(60)
        self._rewind = False

    def _send_offsets_and_commit(self, offsets: list[TopicPartition], consumer: Any) -> None:
        p = self._producer
        if offsets:
            meta = consumer.consumer_group_metadata()
            bounded(lambda: p.send_offsets_to_transaction(offsets, meta, self.txn_timeout), self.txn_timeout + 2, "send_offsets_to_transaction")
        bounded(lambda: p.commit_transaction(self.txn_timeout), self.txn_timeout + 2, "commit_transaction")

    def _recover(self, exc: KafkaException | TransactionStuck, what: str) -> None:
        err = exc.args[0] if isinstance(exc, KafkaException) else exc
        log.warning("%s: transaction failed (%s); the batch will be read again", what, err)
        try:
            if isinstance(exc, TransactionStuck) or exc.args[0].fatal():
                raise KafkaException(str(exc))
            bounded(lambda: self._producer.abort_transaction(self.txn_timeout), self.txn_timeout + 2, "abort_transaction")
        except (KafkaException, TransactionStuck):
            # replaced, not closed: closing a producer stuck in a call could block as well
            _abandoned.append(self._producer)
            self._producer = client.producer(self._txn_settings, **{"transactional.id": self._txn_id, "linger.ms": 1})
            self._producer.init_transactions(60)
        self._rewind = True

    def _rewind_if_needed(self, consumer: Any) -> bool:
        """True when the consumer is at its committed offsets (rewound if needed)."""
        if not self._rewind:
            return True
        try:
            parts = consumer.assignment()
            for tp in consumer.committed(parts, timeout=10):
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        except KafkaException as exc:
            log.warning("rewinding after a failed transaction: %s (will retry)", exc)
            return False
        self._rewind = False
        return True


def read_compacted(settings: ClusterSettings, topic: str, timeout: float = 30.0) -> dict[bytes, bytes | None]:
    """The latest value per key of a topic (committed records only), read to its current end."""
    c = client.consumer(settings, f"riverbed-read-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True, "isolation.level": "read_committed", "fetch.wait.max.ms": 10})
    try:
        md = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None:
            return {}
        waiting = set()
        parts = []
        for p in md.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                waiting.add(p)
                parts.append(TopicPartition(topic, p, low))
        out: dict[bytes, bytes | None] = {}
        c.assign(parts)
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout} s")
            msgs: list[Any] = c.consume(1000, 0.05)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(m.partition())
                        continue
                    raise KafkaException(err)
                out[m.key() or b""] = m.value()
        return out
    finally:
        c.close()


def read_sagas(settings: ClusterSettings, state_topic: str) -> dict[str, sm.SagaState]:
    out = {}
    for key, value in read_compacted(settings, state_topic).items():
        if value is None:
            continue
        try:
            out[key.decode()] = sm.SagaState.from_json(value)
        except (ValueError, TypeError) as exc:
            log.warning("saga state %r in %s is unreadable: %s", key, state_topic, exc)
    return out


class SagaOrchestrator(_Transactional):
    """Runs the instances of one saga definition (one active orchestrator per definition: a
    second one with the same app id fences the first through the transactional id)."""

    def __init__(self, settings: ClusterSettings, definition: sm.SagaDefinition, app_id: str | None = None,
                 clock: Callable[[], float] = time.time, txn_timeout: float | None = None) -> None:
        self.settings, self.definition, self.clock = settings, definition, clock
        self.app_id = app_id or definition.name
        self.state_topic = f"{definition.name}.saga-state"
        self.reply_topic = f"{definition.name}.saga-replies"
        topics: dict[str, tuple[int, Mapping[str, str]]] = {self.state_topic: (1, {"cleanup.policy": "compact"}), self.reply_topic: (1, {})}
        for step in definition.steps:
            topics.setdefault(step.topic, (1, {}))
        client.ensure_topics(client.admin(settings), topics)
        self._init_txn(settings, f"{self.app_id}.saga-orchestrator", txn_timeout)
        self.sagas = read_sagas(settings, self.state_topic)
        self._consumer = client.consumer(settings, f"{self.app_id}.saga-orchestrator", **{"auto.offset.reset": "earliest", "isolation.level": "read_committed", "fetch.wait.max.ms": 20})
        self._consumer.subscribe([self.reply_topic])
        self._lock = threading.Lock()
        self._pending: list[tuple[sm.SagaState, list[sm.Outgoing]]] = []
        resend = []
        for s in self.sagas.values():
            if not s.finished:  # resume: send the awaited command again, keep the stored deadline
                deadline = s.deadline
                out = sm._send(s, definition, self.clock(), self.reply_topic)
                s.deadline = deadline
                resend.append((s, out))
        if resend:
            log.info("saga %s resumes %d unfinished instances", definition.name, len(resend))
            self._commit(resend, None)

    def start(self, data: dict[str, Any], saga_id: str | None = None) -> str:
        """Starts a saga instance (idempotent by ``saga_id``: a known id is not started again)."""
        sid = saga_id or str(uuid.uuid4())
        with self._lock:
            if sid in self.sagas or any(s.saga_id == sid for s, _ in self._pending):
                return sid
            s, out = sm.start(self.definition, sid, data, self.clock(), self.reply_topic)
            self._pending.append((s, out))
        return sid

    def _commit(self, changes: list[tuple[sm.SagaState, list[sm.Outgoing]]], offsets: list[TopicPartition] | None) -> None:
        p = self._producer
        p.begin_transaction()
        for s, out in changes:
            p.produce(self.state_topic, key=s.saga_id.encode(), value=s.to_json())
            for o in out:
                p.produce(o.topic, key=o.key.encode(), value=json.dumps(o.value, separators=(",", ":")).encode())
        self._send_offsets_and_commit(offsets or [], self._consumer)
        for s, _ in changes:
            self.sagas[s.saga_id] = s

    def poll(self, timeout: float = 0.5) -> int:
        """Handles replies and expired deadlines; returns the number of transitions."""
        if not self._rewind_if_needed(self._consumer):
            time.sleep(min(timeout, 0.5))
            return 0
        with self._lock:
            changes, self._pending = self._pending, []
        msgs: list[Any] = self._consumer.consume(200, timeout)
        offsets: dict[int, int] = {}
        now = self.clock()
        touched: dict[str, tuple[sm.SagaState, list[sm.Outgoing]]] = {s.saga_id: (s, out) for s, out in changes}
        for m in msgs:
            if m.error() is not None:
                continue
            offsets[m.partition()] = m.offset() + 1
            try:
                reply = json.loads(m.value() or b"")
                sid = str(reply["sagaId"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("saga %s: unreadable reply at %s[%d]@%d: %s", self.definition.name, m.topic(), m.partition(), m.offset(), exc)
                continue
            s = touched[sid][0] if sid in touched else self.sagas.get(sid)
            if s is None:
                log.warning("saga %s: reply for unknown instance %s ignored", self.definition.name, sid)
                continue
            s = sm.SagaState.from_json(s.to_json())  # work on a copy: committed state changes only on commit
            out = sm.on_reply(s, self.definition, reply, now, self.reply_topic)
            if out is None:
                log.info("saga %s %s: ignoring reply %s/%s (awaiting %s)", self.definition.name, sid, reply.get("step"), reply.get("action"), s.current(self.definition))
                continue
            prev = touched.get(sid, (s, []))[1]
            touched[sid] = (s, prev + out)
        for sid, s0 in list(self.sagas.items()):
            if sid in touched or s0.finished or now < s0.deadline:
                continue
            s = sm.SagaState.from_json(s0.to_json())
            touched[sid] = (s, sm.on_timeout(s, self.definition, now, self.reply_topic))
        if not touched and not offsets:
            return 0
        tps = [TopicPartition(self.reply_topic, p, o) for p, o in offsets.items()]
        try:
            self._commit(list(touched.values()), tps)
        except (KafkaException, TransactionStuck) as exc:
            self._recover(exc, f"saga {self.definition.name}")
            with self._lock:
                self._pending = changes + self._pending
            return 0
        return len(touched)

    def state(self, saga_id: str) -> sm.SagaState | None:
        return self.sagas.get(saga_id)

    def run_until(self, done: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"saga {self.definition.name}: condition not reached in {timeout} s")
            self.poll(0.1)

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(5)
        self._producer.close()


Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class SagaParticipant(_Transactional):
    """A service's side of a saga: ``handlers`` maps command names to functions of the saga
    data that return data to add (or None), raise StepFailed to fail, NoReply to stay silent."""

    def __init__(self, settings: ClusterSettings, topic: str, handlers: Mapping[str, Handler], app_id: str, txn_timeout: float | None = None) -> None:
        self.settings, self.topic, self.handlers = settings, topic, dict(handlers)
        self.processed_topic = f"{topic}.processed"
        client.ensure_topics(client.admin(settings), {topic: (1, {}), self.processed_topic: (1, {"cleanup.policy": "compact"})})
        self._init_txn(settings, f"{app_id}.participant.{topic}", txn_timeout)
        self.processed: dict[str, bytes] = {k.decode(): v for k, v in read_compacted(settings, self.processed_topic).items() if v is not None}
        self._consumer = client.consumer(settings, f"{app_id}.participant.{topic}", **{"auto.offset.reset": "earliest", "isolation.level": "read_committed", "fetch.wait.max.ms": 20})
        self._consumer.subscribe([topic])
        self.handled = 0  # handler runs (a repeated command does not run it again)

    def poll(self, timeout: float = 0.5) -> int:
        if not self._rewind_if_needed(self._consumer):
            time.sleep(min(timeout, 0.5))
            return 0
        msgs: list[Any] = self._consumer.consume(100, timeout)
        good = [m for m in msgs if m.error() is None]
        if not good:
            return 0
        p = self._producer
        staged: dict[str, bytes] = {}
        p.begin_transaction()
        try:
            for m in good:
                try:
                    cmd = json.loads(m.value() or b"")
                    key, reply_to = str(cmd["idempotencyKey"]), str(cmd["replyTo"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("participant %s: unreadable command at offset %d: %s", self.topic, m.offset(), exc)
                    continue
                reply = staged.get(key) or self.processed.get(key)
                if reply is None:
                    out = self._handle(cmd)
                    if out is None:
                        continue
                    reply = json.dumps(out, separators=(",", ":")).encode()
                    p.produce(self.processed_topic, key=key.encode(), value=reply)
                    staged[key] = reply
                p.produce(reply_to, key=str(cmd["sagaId"]).encode(), value=reply)
            last: dict[int, int] = {}
            for m in good:
                last[m.partition()] = m.offset() + 1
            self._send_offsets_and_commit([TopicPartition(self.topic, q, o) for q, o in last.items()], self._consumer)
        except (KafkaException, TransactionStuck) as exc:
            # the handlers ran in this process: remember their replies, so that reading the
            # batch again re-sends them instead of running the handlers a second time
            self.processed.update(staged)
            self._recover(exc, f"participant {self.topic}")
            return 0
        self.processed.update(staged)
        return len(good)

    def _handle(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        base = {"sagaId": cmd["sagaId"], "step": cmd.get("step"), "action": cmd.get("action")}
        fn = self.handlers.get(str(cmd.get("command")))
        if fn is None:
            return {**base, "ok": False, "reason": f"unknown command {cmd.get('command')!r}"}
        try:
            data = fn({**(cmd.get("data") or {}), "idempotencyKey": cmd.get("idempotencyKey")})
        except NoReply:
            return None
        except StepFailed as exc:
            return {**base, "ok": False, "reason": str(exc)}
        except Exception as exc:
            log.exception("participant %s: %s failed", self.topic, cmd.get("command"))
            return {**base, "ok": False, "reason": f"{type(exc).__name__}: {exc}"}
        self.handled += 1
        return {**base, "ok": True, "data": data or {}}

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(5)
        self._producer.close()


Emit = tuple[str, Envelope]


class Reactor(_Transactional):
    """Choreography: react to events of ``topics`` with ``handler(envelope) -> [(topic, event)]``;
    the emitted events and the consumed offsets are committed in one transaction (a crash
    neither loses nor repeats a reaction)."""

    def __init__(self, settings: ClusterSettings, topics: list[str], handler: Callable[[Envelope], Iterable[Emit]], app_id: str, txn_timeout: float | None = None) -> None:
        self.handler = handler
        self._init_txn(settings, f"{app_id}.reactor", txn_timeout)
        self._consumer = client.consumer(settings, f"{app_id}.reactor", **{"auto.offset.reset": "earliest", "isolation.level": "read_committed", "fetch.wait.max.ms": 20})
        self._consumer.subscribe(topics)

    def poll(self, timeout: float = 0.5) -> int:
        if not self._rewind_if_needed(self._consumer):
            time.sleep(min(timeout, 0.5))
            return 0
        msgs: list[Any] = [m for m in self._consumer.consume(200, timeout) if m.error() is None]
        if not msgs:
            return 0
        p = self._producer
        p.begin_transaction()
        try:
            last: dict[tuple[str, int], int] = {}
            for m in msgs:
                last[(m.topic(), m.partition())] = m.offset() + 1
                try:
                    env = Envelope.decode(m.value(), m.partition(), m.offset(), m.topic())
                except InvalidEnvelope as exc:
                    log.warning("reactor skips %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
                    continue
                for topic, out in self.handler(env):
                    headers: Any = out.headers()
                    p.produce(topic, key=out.aggregate_id.encode(), value=out.encode(), headers=headers)
            self._send_offsets_and_commit([TopicPartition(t, q, o) for (t, q), o in last.items()], self._consumer)
        except (KafkaException, TransactionStuck) as exc:
            self._recover(exc, "reactor")
            return 0
        return len(msgs)

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(5)
        self._producer.close()
