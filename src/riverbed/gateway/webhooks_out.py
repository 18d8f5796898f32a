"""Webhooks out: a subscription delivers a topic's records as signed HTTP POSTs (Standard
Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Each subscription is its own consumer group, task and HTTP client, so a slow or failing endpoint
holds up only itself. Records are read in batches; inside a batch the records are spread over
``lanes`` by key (records of one key stay in one lane, in offset order) and the lanes deliver in
parallel. A failed POST (non-2xx, timeout, connection error) is retried with exponential backoff
and full jitter, honouring ``Retry-After``; after ``max_attempts`` the record goes to the
dead-letter topic with the ``riverbed.errors.*`` headers of riverbed.messaging. Offsets are
committed when the whole batch is settled (delivered or dead-lettered): after a restart the
subscription resumes from there (at-least-once; the webhook-id of a record is the same on every
attempt, ``msg_<topic>_<partition>_<offset>``, so receivers can drop repeats).

While a batch is in flight the consumer's partitions are paused and it keeps polling, so
retries that last hours do not make it leave its group. A circuit breaker stops every lane from
hammering an endpoint that failed ``BREAKER_THRESHOLD`` times in a row: attempts wait until the
breaker's backoff has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import httpx
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from riverbed.client import ClusterSettings, consumer
from riverbed.messaging.deadletter import (
    H_ATTEMPTS,
    H_EXC_CLASS,
    H_EXC_MESSAGE,
    H_GROUP,
    H_OFFSET,
    H_PARTITION,
    H_TIMESTAMP,
    H_TOPIC,
)

from .config import OutboundSubscription, json_path
from .limits import RateLimiter
from .producer import AsyncProducer, NotStored
from .signatures import sign_standard

log = logging.getLogger("riverbed.gateway.out")

BREAKER_THRESHOLD = 5


class DeliveryFailed(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def backoff(sub: OutboundSubscription, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential from backoff_ms, capped at
    backoff_max_ms, with full jitter (uniform between half and all of it)."""
    base = min(sub.backoff_max_ms, sub.backoff_ms * 2 ** max(0, attempt - 1)) / 1000
    return float(base * (rng or random).uniform(0.5, 1.0))


def record_headers(m: Message) -> list[tuple[str, Any]]:
    return list(m.headers() or ())  # type: ignore[arg-type]


def position(m: Message) -> tuple[str, int, int]:
    topic, partition, offset = m.topic(), m.partition(), m.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def lane_of(msg: Message, lanes: int) -> int:
    key = msg.key()
    return hash(key) % lanes if key is not None else position(msg)[1] % lanes


class Delivery:
    def __init__(self, sub: OutboundSubscription, settings: ClusterSettings, http: httpx.AsyncClient | None = None) -> None:
        self.sub, self.settings = sub, settings
        self.http = http or httpx.AsyncClient(timeout=sub.timeout_ms / 1000, limits=httpx.Limits(max_connections=sub.lanes))
        self.limiter = RateLimiter(sub.rate_limit, max(1, int(sub.rate_limit))) if sub.rate_limit > 0 else None
        self.delivered = self.failures = self.dead = self.filtered = 0
        self.consecutive_failures = 0
        self.open_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._producer: AsyncProducer | None = None
        self._stopping = False
        self._carry: list[Message] = []
        self._settled: set[tuple[str, int, int]] = set()
        self._schedule: dict[str, tuple[int, float]] = {}  # msg id -> (attempts made, next due, unix s)

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed_attempts": self.failures, "dead_lettered": self.dead, "filtered": self.filtered, "breaker_open": self.open_until > time.monotonic()}

    async def start(self) -> None:
        self._consumer = consumer(self.settings, self.sub.group_id, **{"auto.offset.reset": "earliest", "max.poll.interval.ms": 300_000})
        self._consumer.subscribe([self.sub.topic])
        self._producer = AsyncProducer(self.settings)
        try:
            self._schedule = await asyncio.to_thread(read_schedule, self.settings, self.sub.retry_topic)
        except Exception as exc:  # delivery goes on; retried records start their attempts again
            log.warning("%s: retry schedule not read from %s: %s", self.sub.name, self.sub.retry_topic, exc)
        if self._schedule:
            log.info("%s: %d records resume their retries", self.sub.name, len(self._schedule))
        self._task = asyncio.create_task(self._run(), name=f"webhooks-out-{self.sub.name}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop delivering; commit what was settled (the rest is delivered after a restart)."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.close)
        if self._producer is not None:
            self._producer.close()
        await self.http.aclose()

    # --- the loop ------------------------------------------------------------------------
    async def _poll(self, n: int, timeout: float) -> list[Message]:
        def take() -> list[Message]:
            # consume(n, timeout) would wait for all n: wait for the first record only
            first = self._consumer.poll(timeout)
            return [] if first is None else [first, *self._consumer.consume(n - 1, 0)] if n > 1 else [first]

        msgs = await asyncio.to_thread(take)
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: consumer: %s", self.sub.name, err)
        return out

    async def _run(self) -> None:
        while not self._stopping:
            try:
                batch = self._carry or await self._poll(self.sub.batch, 0.5)
                self._carry = []
                if not batch:
                    continue
                await self._settle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # logged; the loop goes on
                log.exception("%s: delivery loop failed; retrying in 1 s", self.sub.name)
                await asyncio.sleep(1)

    async def _settle(self, batch: list[Message]) -> None:
        """Deliver a batch, then commit. On stop, the records not settled yet are abandoned and
        each partition is committed up to its first unsettled record (they come again)."""
        c = self._consumer
        c.pause(c.assignment())
        self._settled = set()
        work = asyncio.create_task(self._deliver_batch(batch))
        try:
            while not work.done() and not self._stopping:
                # keep the group membership alive; records of newly assigned partitions wait
                self._carry.extend(await self._poll(100, 0.2))
            if not work.done():
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        finally:
            with contextlib.suppress(KafkaException):
                c.resume(c.assignment())
        offsets: dict[tuple[str, int], int] = {}
        blocked: set[tuple[str, int]] = set()
        for m in sorted(batch, key=position):
            topic, partition, offset = position(m)
            if (topic, partition) in blocked:
                continue
            if (topic, partition, offset) not in self._settled:
                blocked.add((topic, partition))
                continue
            offsets[(topic, partition)] = offset + 1
        if not offsets:
            return
        try:
            await asyncio.to_thread(c.commit, offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:
            log.warning("%s: offsets not committed (they will be delivered again): %s", self.sub.name, exc)

    async def _deliver_batch(self, batch: Iterable[Message]) -> None:
        lanes: dict[int, list[Message]] = {}
        for m in batch:
            lanes.setdefault(lane_of(m, self.sub.lanes), []).append(m)
        await asyncio.gather(*(self._lane(msgs) for msgs in lanes.values()))

    async def _lane(self, msgs: list[Message]) -> None:
        for m in msgs:
            if self._wanted(m):
                await self._deliver(m)
            else:
                self.filtered += 1
            self._settled.add(position(m))

    def _wanted(self, m: Message) -> bool:
        if self.sub.filter_field is None:
            return True
        try:
            doc = json.loads(m.value() or b"null")
        except (ValueError, RecursionError):
            return False
        return bool(json_path(doc, self.sub.filter_field) == self.sub.filter_equals)

    # --- one record ----------------------------------------------------------------------
    async def _deliver(self, m: Message) -> None:
        sub = self.sub
        msg_id = f"msg_{m.topic()}_{m.partition()}_{m.offset()}"
        body = m.value() or b""
        headers_in = dict(record_headers(m))
        ctype = headers_in.get("content-type") or b"application/json"
        last: DeliveryFailed | None = None
        made, due = self._schedule.pop(msg_id, (0, 0.0))
        if made:
            last = DeliveryFailed(f"{made} attempts before a restart")
            await asyncio.sleep(max(0.0, due - time.time()))
        for attempt in range(made + 1, sub.max_attempts + 1):
            await self._wait_for_turn()
            try:
                await self._post(msg_id, body, ctype, m)
            except DeliveryFailed as exc:
                last = exc
                self.failures += 1
                self.consecutive_failures += 1
                if self.consecutive_failures >= BREAKER_THRESHOLD:
                    self.open_until = max(self.open_until, time.monotonic() + backoff(sub, self.consecutive_failures - BREAKER_THRESHOLD + 1))
                if attempt == sub.max_attempts:
                    break
                delay = backoff(sub, attempt)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, sub.backoff_max_ms / 1000))
                log.info("%s: %s attempt %d failed (%s); next in %.2f s", sub.name, msg_id, attempt, exc, delay)
                await self._remember(msg_id, attempt, time.time() + delay)
                await asyncio.sleep(delay)
                continue
            self.consecutive_failures = 0
            self.open_until = 0.0
            self.delivered += 1
            if attempt > 1:
                await self._remember(msg_id, 0, 0.0)
            return
        assert last is not None
        await self._dead_letter(m, last, sub.max_attempts)
        await self._remember(msg_id, 0, 0.0)

    async def _remember(self, msg_id: str, attempts: int, due: float) -> None:
        """Write a record's retry state to the compacted retry topic (a tombstone once settled),
        so a restart resumes its attempt count and waits out its backoff."""
        assert self._producer is not None
        value = json.dumps({"attempts": attempts, "due": due}).encode() if attempts else None
        try:
            await self._producer.send(self.sub.retry_topic, value, msg_id.encode())
        except NotStored as exc:
            log.warning("%s: retry state of %s not stored: %s", self.sub.name, msg_id, exc)

    async def _wait_for_turn(self) -> None:
        while True:
            now = time.monotonic()
            if self.open_until > now:
                await asyncio.sleep(self.open_until - now)
                continue
            if self.limiter is not None:
                wait = self.limiter.take("endpoint")
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
            return

    async def _post(self, msg_id: str, body: bytes, ctype: bytes, m: Message) -> None:
        headers = sign_standard(msg_id, body, self.sub.secret)
        headers["content-type"] = ctype.decode("latin-1")
        headers["user-agent"] = "riverbed-gateway"
        key = m.key()
        if key is not None:
            with contextlib.suppress(UnicodeDecodeError):
                headers["x-riverbed-key"] = key.decode()
        try:
            r = await self.http.post(self.sub.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if 200 <= r.status_code < 300:
            return
        retry_after = r.headers.get("retry-after")
        raise DeliveryFailed(f"HTTP {r.status_code}", float(retry_after) if retry_after and retry_after.isdigit() else None)

    async def _dead_letter(self, m: Message, exc: DeliveryFailed, attempts: int) -> None:
        assert self._producer is not None
        topic, partition, offset = position(m)
        extra: dict[str, str] = {
            H_TOPIC: topic, H_PARTITION: str(partition), H_OFFSET: str(offset), H_TIMESTAMP: str(m.timestamp()[1]),
            H_GROUP: self.sub.group_id, H_EXC_CLASS: "riverbed.gateway.DeliveryFailed", H_EXC_MESSAGE: f"{self.sub.url}: {exc}", H_ATTEMPTS: str(attempts),
        }
        headers: list[tuple[str, bytes]] = [(k, v) for k, v in record_headers(m) if isinstance(v, bytes)]
        headers += [(k, v.encode()) for k, v in extra.items()]
        delay = 1.0
        while True:  # the offset is not committed until the dead letter is stored
            try:
                await self._producer.send(self.sub.dead_letter_topic, m.value(), m.key(), headers)
                break
            except NotStored as err:
                log.error("%s: dead letter not stored (%s); retrying", self.sub.name, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        self.dead += 1
        log.warning("%s: msg_%s_%d_%d dead-lettered to %s after %d attempts: %s", self.sub.name, m.topic(), m.partition(), m.offset(), self.sub.dead_letter_topic, attempts, exc)


def read_schedule(settings: ClusterSettings, topic: str, timeout: float = 10.0) -> dict[str, tuple[int, float]]:
    """The retry topic's latest state per record (tombstones removed)."""
    c = consumer(settings, f"riverbed-gateway-retries-{time.monotonic_ns()}", **{"enable.partition.eof": True})
    try:
        md = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None:
            return {}
        parts = [TopicPartition(topic, p, 0) for p in md.partitions]
        pending = {tp.partition for tp in parts}
        c.assign(parts)
        out: dict[str, tuple[int, float]] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
                continue
            key, value = m.key(), m.value()
            if key is None:
                continue
            if value is None:
                out.pop(key.decode(), None)
            else:
                state = json.loads(value)
                out[key.decode()] = (int(state["attempts"]), float(state["due"]))
        return out
    finally:
        c.close()
