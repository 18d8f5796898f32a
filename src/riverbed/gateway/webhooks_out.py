"""Webhooks out: a subscription delivers a topic's records as signed HTTP POSTs (Standard
Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Each subscription is its own consumer group, task and HTTP client, so a slow or failing endpoint
holds up only itself. Records are read in batches; inside a batch the records are spread over
``lanes`` by key (records of one key stay in one lane, in offset order) and the lanes deliver in
parallel. Each record gets one attempt in its lane. A record that fails (non-2xx, timeout,
connection error) is *parked*: written to the subscription's retry topic with its attempt count
and next due time in ``riverbed.retry.*`` headers, and from then on every newer record of its
key is parked behind it without an attempt, so one key's order holds while the other keys go
on. A task per parked key retries the key's oldest parked record when due (exponential backoff
with full jitter, honouring ``Retry-After``), writing a new copy with the new count and due
time after each failure; once delivered or dead-lettered (after ``max_attempts``, with the
``riverbed.errors.*`` headers of riverbed.messaging) a ``done`` marker follows in the retry
topic and the key's next parked record is up.

Source offsets are committed when a batch is settled (delivered, parked or dead-lettered); the
retry topic's offsets (group ``<group>.retry``) up to its first record still live. The retry
topic is partitioned as the source topic and a record parked from source partition p goes to
retry partition p: when the group assigns p to this instance, retry partition p is read from
its committed offset to its end, which brings back p's parked records with their schedule
before p's records are taken; when p is revoked they are given up to the new owner
(at-least-once: the webhook-id of a record is the same on every attempt,
``msg_<topic>_<partition>_<offset>``, so receivers can drop repeats).

While a batch is in flight the consumer's partitions are paused and it keeps polling. A circuit
breaker stops every lane from hammering an endpoint that failed ``BREAKER_THRESHOLD`` times in
a row; ``max_parked`` bounds the records parked (and held in memory): beyond it intake waits.
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
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from riverbed.client import ClusterSettings, admin, consumer, ensure_topics
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


H_RETRY_ID = "riverbed.retry.id"  # the record's webhook-id
H_RETRY_STATE = "riverbed.retry.state"  # "parked" or "done"
H_RETRY_ATTEMPTS = "riverbed.retry.attempts"  # POSTs made so far
H_RETRY_DUE = "riverbed.retry.due"  # next attempt, unix ms
H_RETRY_TOPIC = "riverbed.retry.topic"  # where the record came from
H_RETRY_PARTITION = "riverbed.retry.partition"
H_RETRY_OFFSET = "riverbed.retry.offset"
H_RETRY_TIMESTAMP = "riverbed.retry.timestamp"
_RETRY_HEADERS = {H_RETRY_ID, H_RETRY_STATE, H_RETRY_ATTEMPTS, H_RETRY_DUE, H_RETRY_TOPIC, H_RETRY_PARTITION, H_RETRY_OFFSET, H_RETRY_TIMESTAMP}


class Parked:
    """A record waiting in the retry topic: the original record's key, value, headers and
    position, the attempts made and when the next one is due."""

    __slots__ = ("attempts", "due", "headers", "key", "msg_id", "offset", "partition", "positions", "stored", "timestamp", "topic", "value")

    def __init__(self, msg_id: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], origin: tuple[str, int, int], timestamp: int, attempts: int, due: float) -> None:
        self.msg_id, self.key, self.value, self.headers = msg_id, key, value, headers
        self.topic, self.partition, self.offset = origin
        self.timestamp, self.attempts, self.due = timestamp, attempts, due
        self.positions: list[tuple[int, int]] = []  # (partition, offset) of its records in the retry topic
        self.stored: asyncio.Future[None] | None = None  # resolved once its park record is acknowledged

    @classmethod
    def of(cls, m: Message, attempts: int, due: float) -> Parked:
        topic, partition, offset = position(m)
        headers = [(k, v) for k, v in record_headers(m) if isinstance(v, bytes)]
        return cls(f"msg_{topic}_{partition}_{offset}", m.key(), m.value(), headers, (topic, partition, offset), m.timestamp()[1], attempts, due)

    def record_headers(self) -> list[tuple[str, bytes]]:
        own = {H_RETRY_ID: self.msg_id, H_RETRY_STATE: "parked", H_RETRY_ATTEMPTS: str(self.attempts), H_RETRY_DUE: str(int(self.due * 1000)), H_RETRY_TOPIC: self.topic, H_RETRY_PARTITION: str(self.partition), H_RETRY_OFFSET: str(self.offset), H_RETRY_TIMESTAMP: str(self.timestamp)}
        return self.headers + [(k, v.encode()) for k, v in own.items()]

    @property
    def origin(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset


def park_key(key: bytes | None, msg_id: str) -> bytes | str:
    """Records of one key are delivered in order; a record without a key is its own 'key'."""
    return key if key is not None else msg_id


class Delivery:
    def __init__(self, sub: OutboundSubscription, settings: ClusterSettings, http: httpx.AsyncClient | None = None, create_topics: bool = True) -> None:
        self.sub, self.settings, self.create_topics = sub, settings, create_topics
        self._retry_partitions = 1  # of the retry topic: source partition p parks in p % this
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
        # parked records: per key, in the order of the source topic; each key has a task that
        # retries its head when due (at most `lanes` POSTs of parked records at once)
        self._parked: dict[bytes | str, list[Parked]] = {}
        self._parked_ids: set[str] = set()
        self._done_ids: set[str] = set()  # settled from the retry topic, read at start
        self._key_tasks: dict[bytes | str, asyncio.Task[None]] = {}
        self._retry_slots = asyncio.Semaphore(sub.lanes)
        self._retry_consumer: Any = None
        self._live: dict[int, dict[str, int]] = {}  # retry partition -> msg id -> its first offset there
        self._written: dict[int, int] = {}  # retry partition -> next offset after our last write
        self._committed: dict[int, int] = {}
        self._commit_task: asyncio.Task[None] | None = None
        self._assigned: set[int] = set()  # source partitions this instance owns
        self._uncommittable: set[int] = set()  # retry partitions whose parked records were not read
        self._loop: asyncio.AbstractEventLoop | None = None

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed_attempts": self.failures, "dead_lettered": self.dead, "filtered": self.filtered, "parked": len(self._parked_ids), "parked_keys": len(self._parked), "partitions": sorted(self._assigned), "breaker_open": self.open_until > time.monotonic()}

    async def start(self) -> None:
        self._producer = AsyncProducer(self.settings)
        self._retry_consumer = consumer(self.settings, self.sub.retry_group_id)  # commits only
        try:
            self._retry_partitions = await asyncio.to_thread(self._ensure_retry_topic)
        except Exception as exc:
            log.warning("%s: retry topic %s not checked: %s", self.sub.name, self.sub.retry_topic, exc)
        self._loop = asyncio.get_running_loop()
        self._consumer = consumer(self.settings, self.sub.group_id, **{"auto.offset.reset": "earliest", "max.poll.interval.ms": 300_000, "session.timeout.ms": self.sub.session_timeout_ms})
        # parked records belong to the instance that owns their source partition: read back
        # when it is assigned (before its records are taken), given up when it is revoked
        self._consumer.subscribe([self.sub.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self._commit_task = asyncio.create_task(self._commit_retries(), name=f"webhooks-out-{self.sub.name}-retry-commit")
        self._task = asyncio.create_task(self._run(), name=f"webhooks-out-{self.sub.name}")

    def _ensure_retry_topic(self) -> int:
        """The retry topic's partition count; created (as many partitions as the source topic)
        when missing and the gateway creates topics."""
        c = self._retry_consumer
        md = c.list_topics(timeout=10).topics
        retry = md.get(self.sub.retry_topic)
        if retry is not None and retry.error is None:
            return max(1, len(retry.partitions))
        source = md.get(self.sub.topic)
        n = len(source.partitions) if source is not None and source.error is None and source.partitions else 1
        if self.create_topics:
            ensure_topics(admin(self.settings), {self.sub.retry_topic: (n, {})})
        return n

    def _retry_parts(self, source_parts: Iterable[int]) -> set[int]:
        return {p % self._retry_partitions for p in source_parts}

    def _on_assign(self, c: Any, parts: list[TopicPartition]) -> None:
        """(In the consumer's poll, on a worker thread.) Read the parked records of the newly
        assigned partitions; handed to the loop before the poll returns their records."""
        mine = self._retry_parts(tp.partition for tp in parts)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._assigned.update, [tp.partition for tp in parts])
        try:
            found = read_parked(self.settings, self.sub.retry_group_id, self.sub.retry_topic, mine)
        except Exception as exc:
            log.error("%s: parked records of partitions %s not read from %s (%s): they wait for the next assignment, and those offsets of the retry topic are not committed until then", self.sub.name, sorted(mine), self.sub.retry_topic, exc)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._no_commits, mine)
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._adopt_partitions, found)

    def _on_revoke(self, c: Any, parts: list[TopicPartition]) -> None:
        mine = self._retry_parts(tp.partition for tp in parts)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._assigned.difference_update, [tp.partition for tp in parts])
        self._loop.call_soon_threadsafe(self._drop_partitions, mine)

    def _no_commits(self, parts: set[int]) -> None:
        self._uncommittable |= parts

    def _adopt_partitions(self, found: tuple[list[Parked], set[str], dict[int, int], dict[int, int]]) -> None:
        entries, done, committed, ends = found
        self._done_ids |= done
        self._committed.update(committed)
        for part, end in ends.items():
            self._written[part] = max(self._written.get(part, 0), end)
        for e in entries:
            if e.msg_id in self._parked_ids:
                continue
            self._adopt(e)
            for part, off in e.positions:
                self._live.setdefault(part, {}).setdefault(e.msg_id, off)
        if entries:
            log.info("%s: %d parked records of %d keys resume their retries", self.sub.name, len(entries), len({park_key(e.key, e.msg_id) for e in entries}))

    def _drop_partitions(self, parts: set[int]) -> None:
        """Another instance takes these partitions over: stop retrying their parked records
        (it reads them back from the retry topic; one in flight now may be POSTed twice)."""
        for pk, q in list(self._parked.items()):
            if q and q[0].partition % self._retry_partitions in parts:
                task = self._key_tasks.pop(pk, None)
                if task is not None:
                    task.cancel()
                del self._parked[pk]
                for e in q:
                    self._parked_ids.discard(e.msg_id)
        offsets = {p: o for p, o in self._retry_offsets().items() if p in parts and p not in self._uncommittable}
        if offsets and self._retry_consumer is not None:
            with contextlib.suppress(KafkaException):
                self._retry_consumer.commit(offsets=[TopicPartition(self.sub.retry_topic, p, o) for p, o in offsets.items()], asynchronous=True)
        for part in parts:
            self._live.pop(part, None)
            self._written.pop(part, None)
            self._committed.pop(part, None)
            self._uncommittable.discard(part)

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
        for t in [*self._key_tasks.values(), *([self._commit_task] if self._commit_task else [])]:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        if self._retry_consumer is not None:
            with contextlib.suppress(KafkaException):
                await asyncio.to_thread(self._commit_retry_offsets)
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.close)
        if self._retry_consumer is not None:
            await asyncio.to_thread(self._retry_consumer.close)
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
        """One attempt per record; a record that fails is parked in the retry topic (and so
        is every later record of its key while the key has parked records): the lane goes on."""
        sub = self.sub
        for m in msgs:
            topic, partition, offset = position(m)
            msg_id = f"msg_{topic}_{partition}_{offset}"
            if partition not in self._assigned:
                continue  # revoked meanwhile: not settled here, its new owner delivers it
            if not self._wanted(m):
                self.filtered += 1
            elif msg_id in self._parked_ids or msg_id in self._done_ids:
                pass  # parked or settled before a restart, its offset not committed then
            elif park_key(m.key(), msg_id) in self._parked:
                await self._room()
                await self._park(Parked.of(m, 0, 0.0))  # behind the key's parked records
            else:
                value = m.value()
                exc = await self._attempt(msg_id, value, m.key(), content_type(record_headers(m)))
                if exc is None:
                    self.delivered += 1
                elif sub.max_attempts == 1:
                    await self._dead_letter(Parked.of(m, 1, 0.0), exc)
                else:
                    delay = self._delay(exc, 1)
                    log.info("%s: %s attempt 1 failed (%s); parked, next in %.2f s", sub.name, msg_id, exc, delay)
                    await self._room()
                    await self._park(Parked.of(m, 1, time.time() + delay))
            self._settled.add((topic, partition, offset))

    def _wanted(self, m: Message) -> bool:
        if self.sub.filter_field is None:
            return True
        try:
            doc = json.loads(m.value() or b"null")
        except (ValueError, RecursionError):
            return False
        return bool(json_path(doc, self.sub.filter_field) == self.sub.filter_equals)

    # --- one record ----------------------------------------------------------------------
    def _delay(self, exc: DeliveryFailed, attempts: int) -> float:
        delay = backoff(self.sub, attempts)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.sub.backoff_max_ms / 1000))
        return delay

    async def _attempt(self, msg_id: str, body: bytes | None, key: bytes | None, ctype: bytes) -> DeliveryFailed | None:
        """One POST (after the breaker and the rate limit allow it); the failure, if any."""
        await self._wait_for_turn()
        try:
            await self._post(msg_id, body or b"", ctype, key)
        except DeliveryFailed as exc:
            self.failures += 1
            self.consecutive_failures += 1
            if self.consecutive_failures >= BREAKER_THRESHOLD:
                self.open_until = max(self.open_until, time.monotonic() + backoff(self.sub, self.consecutive_failures - BREAKER_THRESHOLD + 1))
            return exc
        self.consecutive_failures = 0
        self.open_until = 0.0
        return None

    # --- parked records ------------------------------------------------------------------
    async def _room(self) -> None:
        """Wait while `max_parked` records are parked: memory stays bounded, and intake waits
        (as it did before parking) until retries settle some."""
        if len(self._parked_ids) >= self.sub.max_parked:
            log.warning("%s: %d records parked (max_parked); new records wait", self.sub.name, len(self._parked_ids))
            while len(self._parked_ids) >= self.sub.max_parked:
                await asyncio.sleep(0.2)

    def _adopt(self, e: Parked) -> None:
        """Queue a parked record behind its key's others; start the key's retry task."""
        pk = park_key(e.key, e.msg_id)
        self._parked.setdefault(pk, []).append(e)
        self._parked_ids.add(e.msg_id)
        if pk not in self._key_tasks:
            self._key_tasks[pk] = asyncio.create_task(self._drain(pk), name=f"webhooks-out-{self.sub.name}-retry")

    async def _park(self, e: Parked) -> None:
        """Park a record; returns once the retry topic holds it (its source offset may then be
        committed)."""
        e.stored = asyncio.get_running_loop().create_future()
        self._adopt(e)
        await self._store(e)
        e.stored.set_result(None)

    async def _store(self, e: Parked) -> None:
        """Write the record with its attempts and due time to the retry topic (again after each
        failed retry: the newest copy of a webhook-id is its state)."""
        assert self._producer is not None
        delay = 0.5
        while True:
            try:
                stored = await self._producer.send(self.sub.retry_topic, e.value, e.key, e.record_headers(), partition=e.partition % self._retry_partitions)
                break
            except NotStored as err:
                log.error("%s: %s not parked in %s (%s); retrying", self.sub.name, e.msg_id, self.sub.retry_topic, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        part, off = stored.partition(), stored.offset()
        assert part is not None and off is not None
        e.positions.append((part, off))
        self._live.setdefault(part, {}).setdefault(e.msg_id, off)
        self._written[part] = max(self._written.get(part, 0), off + 1)

    async def _drain(self, pk: bytes | str) -> None:
        """Retry a key's parked records in order, each when due, until none is left."""
        sub, q = self.sub, self._parked[pk]
        while True:
            if not q:  # no await between this check and the removal: a new park starts a new task
                del self._parked[pk], self._key_tasks[pk]
                return
            e = q[0]
            try:
                if e.stored is not None:
                    await e.stored
                wait = e.due - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                async with self._retry_slots:
                    exc = await self._attempt(e.msg_id, e.value, e.key, content_type(e.headers))
                e.attempts += 1
                if exc is None:
                    self.delivered += 1
                elif e.attempts >= sub.max_attempts:
                    await self._dead_letter(e, exc)
                else:
                    delay = self._delay(exc, e.attempts)
                    log.info("%s: %s attempt %d failed (%s); next in %.2f s", sub.name, e.msg_id, e.attempts, exc, delay)
                    e.due = time.time() + delay
                    await self._store(e)
                    continue
                await self._release(e)
                q.pop(0)
            except asyncio.CancelledError:
                raise
            except Exception:  # logged; the key's retries go on
                log.exception("%s: retry of %s failed; again in 1 s", sub.name, e.msg_id)
                await asyncio.sleep(1)

    async def _release(self, e: Parked) -> None:
        """A parked record is settled: a 'done' marker in the retry topic (so a restart before
        the retry topic's offsets pass it does not deliver it again), then its copies there
        no longer hold the retry topic's committed offset back."""
        assert self._producer is not None
        headers = [(H_RETRY_ID, e.msg_id.encode()), (H_RETRY_STATE, b"done")]
        try:
            done = await self._producer.send(self.sub.retry_topic, None, e.key, headers, partition=e.partition % self._retry_partitions)
            part, off = done.partition(), done.offset()
            if part is not None and off is not None:
                self._written[part] = max(self._written.get(part, 0), off + 1)
        except NotStored as err:  # a restart may deliver it again (at-least-once)
            log.warning("%s: done marker of %s not stored: %s", self.sub.name, e.msg_id, err)
        for part, _ in e.positions:
            self._live.get(part, {}).pop(e.msg_id, None)
        self._parked_ids.discard(e.msg_id)

    def _retry_offsets(self) -> dict[int, int]:
        """Per retry-topic partition: the first record still live, or past everything written."""
        out = {}
        for part in set(self._written) | set(self._live):
            live = self._live.get(part)
            out[part] = min(live.values()) if live else self._written.get(part, 0)
        return {p: o for p, o in out.items() if o > self._committed.get(p, -1)}

    def _commit_retry_offsets(self) -> None:
        offsets = {p: o for p, o in self._retry_offsets().items() if p not in self._uncommittable}
        if offsets:
            self._retry_consumer.commit(offsets=[TopicPartition(self.sub.retry_topic, p, o) for p, o in offsets.items()], asynchronous=False)
            self._committed.update(offsets)

    async def _commit_retries(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self._commit_retry_offsets)
            except KafkaException as exc:
                log.warning("%s: retry topic offsets not committed: %s", self.sub.name, exc)

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

    async def _post(self, msg_id: str, body: bytes, ctype: bytes, key: bytes | None) -> None:
        headers = sign_standard(msg_id, body, self.sub.secret)
        headers["content-type"] = ctype.decode("latin-1")
        headers["user-agent"] = "riverbed-gateway"
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

    async def _dead_letter(self, e: Parked, exc: DeliveryFailed) -> None:
        assert self._producer is not None
        extra: dict[str, str] = {
            H_TOPIC: e.topic, H_PARTITION: str(e.partition), H_OFFSET: str(e.offset), H_TIMESTAMP: str(e.timestamp),
            H_GROUP: self.sub.group_id, H_EXC_CLASS: "riverbed.gateway.DeliveryFailed", H_EXC_MESSAGE: f"{self.sub.url}: {exc}", H_ATTEMPTS: str(e.attempts),
        }
        headers = e.headers + [(k, v.encode()) for k, v in extra.items()]
        delay = 1.0
        while True:  # not settled until the dead letter is stored
            try:
                await self._producer.send(self.sub.dead_letter_topic, e.value, e.key, headers)
                break
            except NotStored as err:
                log.error("%s: dead letter not stored (%s); retrying", self.sub.name, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        self.dead += 1
        log.warning("%s: %s dead-lettered to %s after %d attempts: %s", self.sub.name, e.msg_id, self.sub.dead_letter_topic, e.attempts, exc)


def content_type(headers: Iterable[tuple[str, Any]]) -> bytes:
    for k, v in headers:
        if k.lower() == "content-type" and isinstance(v, bytes):
            return v
    return b"application/json"


def read_parked(settings: ClusterSettings, group: str, topic: str, partitions: set[int], timeout: float = 30.0) -> tuple[list[Parked], set[str], dict[int, int], dict[int, int]]:
    """`partitions` of the retry topic from the retry group's committed offsets to their end:
    the records still parked (newest state of each webhook-id, in source order), the ids
    settled since, the committed offsets and the offsets past the last record read."""
    c = consumer(settings, group, **{"enable.partition.eof": True})
    try:
        return _read_parked(c, topic, partitions, timeout)
    finally:
        c.close()


def _read_parked(c: Any, topic: str, partitions: set[int], timeout: float) -> tuple[list[Parked], set[str], dict[int, int], dict[int, int]]:
    md = c.list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None:
        return [], set(), {}, {}
    wanted = [p for p in md.partitions if p in partitions]
    if not wanted:
        return [], set(), {}, {}
    committed = c.committed([TopicPartition(topic, p) for p in wanted], timeout=timeout)
    start = {tp.partition: tp.offset for tp in committed}
    c.assign([TopicPartition(topic, p, o if o >= 0 else OFFSET_BEGINNING) for p, o in start.items()])
    pending = set(start)
    entries: dict[str, Parked] = {}
    done: set[str] = set()
    ends: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} not read to its end in {timeout:.0f} s")
        m = c.poll(0.5)
        if m is None:
            continue
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition())
            continue
        h = {k: v for k, v in record_headers(m) if isinstance(v, bytes)}
        ends[position(m)[1]] = position(m)[2] + 1
        if H_RETRY_ID not in h:
            continue
        msg_id = h[H_RETRY_ID].decode()
        where = position(m)[1:]
        if h.get(H_RETRY_STATE) == b"done":
            entries.pop(msg_id, None)
            done.add(msg_id)
            continue
        try:
            attempts, due = int(h[H_RETRY_ATTEMPTS]), int(h[H_RETRY_DUE]) / 1000
            e = entries.get(msg_id)
            if e is None:
                origin = (h[H_RETRY_TOPIC].decode(), int(h[H_RETRY_PARTITION]), int(h[H_RETRY_OFFSET]))
                own = [(k, v) for k, v in record_headers(m) if k not in _RETRY_HEADERS and isinstance(v, bytes)]
                e = entries[msg_id] = Parked(msg_id, m.key(), m.value(), own, origin, int(h.get(H_RETRY_TIMESTAMP, b"0")), attempts, due)
        except (KeyError, ValueError):
            log.warning("%s: record at %s has malformed retry headers; skipped", topic, where)
            continue
        e.attempts, e.due = attempts, due
        e.positions.append(where)
    return sorted(entries.values(), key=lambda e: e.origin), done, {p: o for p, o in start.items() if o >= 0}, ends
