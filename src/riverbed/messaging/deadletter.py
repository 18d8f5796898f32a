"""Dead-letter and retry topics: a consumer-side error policy on confluent-kafka.

A failing record is retried in place (``attempts_in_place`` handler calls), then hops through
non-blocking retry topics with delays (``orders.retry.1m``, ``orders.retry.10m``), then lands in
``orders.DLQ``. Each hop carries, in ``riverbed.errors.*`` headers (UTF-8 strings, the shape of
Kafka Connect's ``__connect.errors.*``), the original topic, partition, offset, timestamp and
consumer group, the exception's class name, message and stack trace, and the attempt count; the
original key, value, headers and timestamp are kept as they were. The consumed offset is
committed only after the broker acknowledged the record in its next topic, so a crash between
the two re-delivers the record (at least once, never lost).

A retry-topic record carries its due time (``riverbed.retry.due``, epoch ms); until then its
partition is paused and the consumer is rewound to it, so other partitions keep flowing and no
thread sleeps. ``blocking=True`` (ordering-sensitive topics) retries on the original partition
instead: paused for each delay in turn, no later record of that partition overtakes it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

log = logging.getLogger("riverbed.messaging.deadletter")

PREFIX = "riverbed.errors."
H_TOPIC = PREFIX + "topic"
H_PARTITION = PREFIX + "partition"
H_OFFSET = PREFIX + "offset"
H_TIMESTAMP = PREFIX + "timestamp"
H_GROUP = PREFIX + "group"
H_EXC_CLASS = PREFIX + "exception.class.name"
H_EXC_MESSAGE = PREFIX + "exception.message"
H_EXC_STACK = PREFIX + "exception.stacktrace"
H_ATTEMPTS = PREFIX + "attempts"
H_DUE = "riverbed.retry.due"
H_HOP = "riverbed.retry.hop"
_OURS = frozenset(
    {
        H_TOPIC,
        H_PARTITION,
        H_OFFSET,
        H_TIMESTAMP,
        H_GROUP,
        H_EXC_CLASS,
        H_EXC_MESSAGE,
        H_EXC_STACK,
        H_ATTEMPTS,
        H_DUE,
        H_HOP,
    }
)
MAX_TEXT = 8192  # bytes of exception message / stack trace kept in a header

Handler = Callable[[Any], None]


class RoutingError(RuntimeError):
    """A failed record could not be written to its retry or dead-letter topic; its offset
    was not committed (it will be consumed again)."""


def _delay_name(seconds: float) -> str:
    s = int(seconds)
    if s > 0 and s % 3600 == 0:
        return f"{s // 3600}h"
    if s > 0 and s % 60 == 0:
        return f"{s // 60}m"
    if seconds == s:
        return f"{s}s"
    return f"{int(seconds * 1000)}ms"


@dataclass(frozen=True)
class RetryPolicy:
    attempts_in_place: int = 3
    """Handler calls per delivery before the record moves on (1 = no in-place retry)."""
    backoff_in_place: float = 0.0
    """Seconds between in-place attempts (keep it short: the consumer waits)."""
    retry_delays: tuple[float, ...] = (60.0, 600.0)
    """One retry topic per delay, in order (``<topic>.retry.1m``, ``<topic>.retry.10m``)."""
    blocking: bool = False
    """Retry on the original partition (paused for each delay) instead of in retry topics."""
    dlq_suffix: str = ".DLQ"
    non_retryable: tuple[type[BaseException], ...] = ()
    """Exception types that go straight to the DLQ."""
    delivery_timeout: float = 30.0
    """Seconds to wait for the broker to acknowledge a record in its next topic."""

    def retry_topic(self, topic: str, hop: int) -> str:
        name = _delay_name(self.retry_delays[hop])
        repeats = sum(1 for d in self.retry_delays[:hop] if _delay_name(d) == name)
        return f"{topic}.retry.{name}" + (f"-{repeats}" if repeats else "")

    def dlq_topic(self, topic: str) -> str:
        return topic + self.dlq_suffix

    def topics(self, topic: str) -> list[str]:
        """The topic, its retry topics (non-blocking mode) and its DLQ."""
        retries = (
            []
            if self.blocking
            else [self.retry_topic(topic, i) for i in range(len(self.retry_delays))]
        )
        return [topic, *retries, self.dlq_topic(topic)]


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "replace")
    return raw if len(raw) <= MAX_TEXT else raw[: MAX_TEXT - 3] + b"..."


def header(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The last value of header ``name`` as a string (None when absent or not UTF-8)."""
    found = None
    for k, v in headers or ():
        if k == name and v is not None:
            found = v
    if found is None:
        return None
    try:
        return found.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


_FIRST_HOP = (H_TOPIC, H_PARTITION, H_OFFSET, H_TIMESTAMP, H_GROUP)


def error_headers(
    headers: Iterable[tuple[str, bytes]] | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    group: str,
    error: BaseException,
    attempts: int,
) -> list[tuple[str, bytes]]:
    """A failed record's headers for its next hop: its own headers without earlier
    ``riverbed.errors.*``/``riverbed.retry.*`` ones, then the original topic, partition, offset,
    timestamp and group (kept from the first hop if there was one) and this error's class,
    message, stack trace and the attempt count (the shape ``riverbed dlq`` reads)."""
    headers = list(headers or ())
    first_hop = header(headers, H_TOPIC) is None
    kept = [(k, v) for k, v in headers if k not in _OURS or (not first_hop and k in _FIRST_HOP)]
    if first_hop:
        kept += [
            (H_TOPIC, topic.encode()),
            (H_PARTITION, str(partition).encode()),
            (H_OFFSET, str(offset).encode()),
            (H_TIMESTAMP, str(timestamp).encode()),
            (H_GROUP, group.encode()),
        ]
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    kept += [
        (H_EXC_CLASS, f"{type(error).__module__}.{type(error).__qualname__}".encode()),
        (H_EXC_MESSAGE, _text(str(error))),
        (H_EXC_STACK, _text(stack)),
        (H_ATTEMPTS, str(attempts).encode()),
    ]
    return kept


@dataclass
class _Pending:
    offset: int
    resume_at: float


@dataclass
class DeadLetterConsumer:
    """Runs ``handler(msg)`` for each record of a confluent-kafka ``Consumer`` under a
    :class:`RetryPolicy`. The consumer must have ``enable.auto.commit=false``; the producer
    should be idempotent (``enable.idempotence=true``)."""

    consumer: Any
    producer: Any
    handler: Handler
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    group: str = ""
    commit_every: int = 1
    """Commit after this many handled records (1: after each). The offset after a record sent to
    a retry topic or the DLQ is committed at once, whatever this says. Above 1, a crash
    re-delivers up to this many handled records: pair it with ``dedup.idempotent``."""
    clock: Callable[[], float] = time.time
    _uncommitted: dict[tuple[str, int], int] = field(default_factory=dict)
    _handled_since_commit: int = 0
    _paused: dict[tuple[str, int], _Pending] = field(default_factory=dict)
    _blocking: dict[tuple[str, int, int], tuple[int, int]] = field(
        default_factory=dict
    )  # -> (rounds, attempts)
    _bases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.commit_every < 1:
            raise ValueError("commit_every must be at least 1")

    def subscribe(self, topics: list[str], **kwargs: Any) -> None:
        """Subscribes to ``topics`` and their retry topics; handled offsets not yet committed
        are committed when partitions are revoked (then ``on_revoke``, if given, is called)."""
        subs: list[str] = []
        for t in topics:
            for name in self.policy.topics(t)[:-1]:  # not the DLQ
                self._bases[name] = t
                subs.append(name)
        user_revoke = kwargs.pop("on_revoke", None)

        def on_revoke(consumer: Any, partitions: list[Any]) -> None:
            self.commit()
            if user_revoke is not None:
                user_revoke(consumer, partitions)

        self.consumer.subscribe(subs, on_revoke=on_revoke, **kwargs)

    def commit(self) -> bool:
        """Commits the handled offsets not committed yet (call it before closing the consumer
        when ``commit_every`` > 1). False, with a log line, when the group refused them (a
        rebalance took the partitions: their new owner re-reads from the last commit)."""
        if not self._uncommitted:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
        self._uncommitted.clear()
        self._handled_since_commit = 0
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning(
                "commit of %s refused: %s (those records will be delivered again)", offsets, exc
            )
            return False
        return True

    # --- the loop ------------------------------------------------------------------------
    def poll(self, timeout: float = 1.0) -> bool:
        """Polls one record and processes it; False when there was none."""
        self._resume_due()
        due = self.next_due()
        msg = self.consumer.poll(timeout if due is None else min(timeout, due))
        if msg is None:
            return False
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", msg.error())
            return False
        self.process(msg)
        return True

    def poll_batch(self, max_records: int = 500, timeout: float = 1.0, dedup: Any = None) -> int:
        """Consumes up to ``max_records`` at once (``Consumer.consume``) and processes each
        under the policy, as :meth:`poll` does one; returns how many were processed. With
        ``dedup`` (a :class:`~riverbed.messaging.dedup.DedupFilter`) the batch's duplicates are
        found in one round trip and committed without calling the handler, and the records the
        handler finished are marked in one more. Pair with ``commit_every`` for fewer commits."""
        self._resume_due()
        due = self.next_due()
        msgs = self.consumer.consume(max_records, timeout if due is None else min(timeout, due))
        good = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            good.append(m)
        if not good:
            return 0
        fresh = None
        if dedup is not None:
            fresh = {id(m) for m in dedup.filter_batch(good)}
        handled = []
        n = 0
        for m in good:
            if (m.topic(), m.partition()) in self._paused:
                continue  # parked earlier in this batch: re-fetched from the parked offset later
            n += 1
            if fresh is not None and id(m) not in fresh:
                self._commit(m.topic(), m.partition(), m.offset(), now=False)  # a duplicate
                continue
            if self.process(m):
                handled.append(m)
        if dedup is not None and handled:
            dedup.mark_batch(handled)
        return n

    def run(self, should_stop: Callable[[], bool], timeout: float = 0.5) -> None:
        while not should_stop():
            self.poll(timeout)

    def process(self, msg: Any) -> bool:
        """Runs the handler for one record under the policy; True when it succeeded (False:
        sent on to a retry topic or the DLQ, or parked until a retry is due)."""
        topic = msg.topic()
        if not self._blocking and self._bases.get(topic, topic) == topic:
            # the common case: a record of the topic itself, nothing being retried
            try:
                self.handler(msg)
            except Exception as exc:
                return self._process(msg, exc)
            self._commit(topic, msg.partition(), msg.offset(), now=False)
            return True
        return self._process(msg, None)

    def _process(self, msg: Any, first_error: BaseException | None) -> bool:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        headers = list(msg.headers() or ())
        base = self._bases.get(topic, topic)
        hop = _int(header(headers, H_HOP), -1) if topic != base else -1
        if hop >= 0:
            due_ms = _int(header(headers, H_DUE), 0)
            if due_ms / 1000.0 > self.clock():
                self._park(topic, partition, offset, due_ms / 1000.0)
                return False
        key = (topic, partition, offset)
        rounds, previous = self._blocking.get(key, (0, 0))
        if hop >= 0:
            previous += _int(header(headers, H_ATTEMPTS), 0)
        error = first_error
        attempts = 0 if first_error is None else 1
        if not isinstance(error, self.policy.non_retryable):
            while attempts < self.policy.attempts_in_place:
                if attempts > 0 and self.policy.backoff_in_place > 0:
                    time.sleep(self.policy.backoff_in_place)
                attempts += 1
                try:
                    self.handler(msg)
                    error = None
                    break
                except Exception as exc:
                    error = exc
                    if isinstance(exc, self.policy.non_retryable):
                        break
        if error is None:
            self._blocking.pop(key, None)
            self._commit(topic, partition, offset, now=False)
            return True
        total = previous + attempts
        fatal = isinstance(error, self.policy.non_retryable)
        next_hop = -1
        target = self.policy.dlq_topic(base)
        if self.policy.blocking:
            if not fatal and rounds < len(self.policy.retry_delays):
                self._blocking[key] = (rounds + 1, total)
                delay = self.policy.retry_delays[rounds]
                log.info(
                    "blocking retry of %s[%d]@%d in %ss after %s: %s",
                    topic,
                    partition,
                    offset,
                    delay,
                    type(error).__name__,
                    error,
                )
                self._park(topic, partition, offset, self.clock() + delay)
                return False
        elif not fatal and hop + 1 < len(self.policy.retry_delays):
            next_hop = hop + 1
            target = self.policy.retry_topic(base, next_hop)
        self._forward(msg, target, error, total, next_hop)
        self._blocking.pop(key, None)
        self._commit(topic, partition, offset)
        return False

    # --- moving a record on --------------------------------------------------------------
    def _forward(
        self, msg: Any, target: str, error: BaseException, attempts: int, hop: int
    ) -> None:
        ts_type, ts = msg.timestamp()
        kept = error_headers(
            msg.headers(),
            msg.topic(),
            msg.partition(),
            msg.offset(),
            ts,
            self.group,
            error,
            attempts,
        )
        if hop >= 0:
            due = self.clock() + self.policy.retry_delays[hop]
            kept += [(H_HOP, str(hop).encode()), (H_DUE, str(int(due * 1000)).encode())]
        outcome: list[Any] = []

        def delivered(err: Any, _m: Any) -> None:
            outcome.append(err)

        kwargs: dict[str, Any] = {
            "key": msg.key(),
            "value": msg.value(),
            "headers": kept,
            "on_delivery": delivered,
        }
        if ts_type != 0 and ts > 0:  # TIMESTAMP_NOT_AVAILABLE == 0
            kwargs["timestamp"] = ts
        try:
            self.producer.produce(target, **kwargs)
        except (KafkaException, BufferError) as exc:
            raise RoutingError(
                f"could not send {msg.topic()}[{msg.partition()}]@{msg.offset()} to {target}: {exc}"
            ) from exc
        deadline = time.monotonic() + self.policy.delivery_timeout
        while not outcome and time.monotonic() < deadline:
            self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        if not outcome or outcome[0] is not None:
            why = outcome[0] if outcome else "no acknowledgement in time"
            raise RoutingError(
                f"could not send {msg.topic()}[{msg.partition()}]@{msg.offset()} to {target}: {why}"
            )
        log.warning(
            "%s[%d]@%d failed %d time(s) (%s: %s); sent to %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            attempts,
            type(error).__name__,
            error,
            target,
        )

    def _commit(self, topic: str, partition: int, offset: int, now: bool = True) -> None:
        self._uncommitted[(topic, partition)] = offset + 1
        self._handled_since_commit += 1
        if now or self._handled_since_commit >= self.commit_every:
            self.commit()

    # --- pausing partitions until a retry is due ---------------------------------------------
    def _park(self, topic: str, partition: int, offset: int, resume_at: float) -> None:
        tp = TopicPartition(topic, partition, offset)
        self.consumer.pause([tp])
        self.consumer.seek(tp)
        self._paused[(topic, partition)] = _Pending(offset, resume_at)

    def _resume_due(self) -> None:
        if not self._paused:
            return
        now = self.clock()
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for key, pending in list(self._paused.items()):
            if key not in assigned:
                del self._paused[
                    key
                ]  # revoked: whoever owns it now starts from the committed offset
                for k in [k for k in self._blocking if k[:2] == key]:
                    del self._blocking[k]
                continue
            if pending.resume_at <= now:
                del self._paused[key]
                self.consumer.resume([TopicPartition(key[0], key[1])])

    def next_due(self) -> float | None:
        """Seconds until the next paused partition resumes (None when none is paused)."""
        if not self._paused:
            return None
        return max(0.0, min(p.resume_at for p in self._paused.values()) - self.clock())


def create_topics(
    admin: Any,
    topics: list[str],
    policy: RetryPolicy,
    num_partitions: int = 1,
    timeout: float = 30.0,
) -> None:
    """Creates each topic's retry topics and DLQ (and the topic) with confluent-kafka's
    ``AdminClient``; topics that exist already are left as they are."""
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    names = [name for t in topics for name in policy.topics(t)]
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=num_partitions) for n in names], request_timeout=timeout
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create {name}: {exc}") from exc
