"""Push to browsers: Server-Sent Events and WebSocket endpoints streaming a topic, or the view of
it that belongs to the authenticated user (record key, or a JSON field, equal to the token's
user id).

One :class:`TopicHub` per route reads the topic with one consumer (no group: every partition
assigned) and fans each record out to the connected clients, indexed by user id so a record
costs only its own users' work. The hub keeps the last ``replay`` records of each partition in
memory (read back from the topic at start), which is what a reconnecting client resumes from.

Positions: a client's position is the next offset per partition, written ``0:15,1:7``. It is
the SSE event id (the browser sends it back as ``Last-Event-ID``) and the ``position`` field of
every WebSocket record frame (send it back as ``?position=`` when reconnecting).

Backpressure: each client has a bounded queue; when it is full the route's ``overflow`` policy
either drops the client (SSE stream ends, WebSocket closes with 1013) or skips it ahead (the
queue is emptied and a ``skipped`` notice tells how many records it missed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from riverbed.client import ClusterSettings, consumer
from riverbed.web import JsonError

from .config import PushRoute, json_path

log = logging.getLogger("riverbed.gateway")

HEARTBEAT = 15.0  # seconds between SSE comments / WebSocket pings on an idle stream
CATCHUP_SCAN = 1_000_000  # records a resuming client may have read from the log for it
CATCHUP_SECONDS = 10.0


@dataclass(slots=True)
class Rec:
    partition: int
    offset: int
    user: str | None  # the filter value (key or JSON field), None when the route has no filter
    body: str  # the record as JSON object members, without braces: shared by every client
    _sse: bytes | None = None

    @property
    def sse_data(self) -> bytes:
        """The SSE ``data:`` line and the blank line after it, encoded once for every client."""
        if self._sse is None:
            self._sse = f"data: {{{self.body}}}\n\n".encode()
        return self._sse


def render(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, timestamp: int) -> str:
    """The JSON members of a record frame: topic, partition, offset, timestamp, key, value (JSON
    when the value parses as JSON, else a string, else value_base64)."""
    parts = [f'"topic":{json.dumps(topic)}', f'"partition":{partition}', f'"offset":{offset}', f'"timestamp":{timestamp}']
    parts.append('"key":' + (json.dumps(key.decode("utf-8", "replace")) if key is not None else "null"))
    if value is None:
        parts.append('"value":null')
    else:
        try:
            json.loads(value)
            parts.append('"value":' + value.decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            try:
                parts.append('"value":' + json.dumps(value.decode()))
            except UnicodeDecodeError:
                parts.append('"value_base64":' + json.dumps(base64.b64encode(value).decode()))
    return ",".join(parts)


def parse_position(text: str | None) -> dict[int, int] | None:
    """``0:15,1:7`` -> {0: 15, 1: 7}; None for no text; ValueError when malformed."""
    if not text:
        return None
    out: dict[int, int] = {}
    for item in text.split(","):
        p, sep, o = item.strip().partition(":")
        if not sep or not p.isdigit() or not o.isdigit():
            raise ValueError(f"position {text!r} is not PARTITION:OFFSET[,...]")
        out[int(p)] = int(o)
    return out


def format_position(cursor: Mapping[int, int]) -> str:
    if len(cursor) == 1:
        for p, o in cursor.items():
            return f"{p}:{o}"
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


class Client:
    """One connected SSE or WebSocket client: a bounded queue of records and its position."""

    def __init__(self, user: str | None, limit: int, overflow: str, cursor: dict[int, int]) -> None:
        self.user, self.limit, self.overflow = user, limit, overflow
        self.cursor = cursor
        self.queue: deque[Rec | str] = deque()  # records, or notices ("skipped:N", "reset")
        self.wake = asyncio.Event()
        self.gone = asyncio.Event()  # set when dropped: the endpoint closes even mid-send
        self.dropped = False
        self.unsubscribed = False
        self.skipped = 0

    def offer(self, rec: Rec) -> None:
        if self.dropped:
            return
        if len(self.queue) >= self.limit:
            if self.overflow == "drop":
                self.drop()
                return
            self.skipped += len(self.queue)
            self.queue.clear()
        self.queue.append(rec)
        self.wake.set()

    def drop(self) -> None:
        self.dropped = True
        self.queue.clear()
        self.wake.set()
        self.gone.set()

    def notice(self, text: str) -> None:
        self.queue.append(text)
        self.wake.set()

    async def batch(self, timeout: float | None) -> list[Rec | str] | None:
        """Everything queued, at once (a pending ``skipped:N`` notice first), after waiting for
        something when nothing is: one wake-up of the writer for all the records fanned out
        since its last write. None after `timeout` idle (None: wait as long as it takes);
        ``["dropped"]`` once dropped. The cursor is not moved: :meth:`advance` it per record as
        it is written."""
        while not self.queue and not self.skipped:
            if self.dropped:
                return ["dropped"]
            self.wake.clear()
            if timeout is None:
                await self.wake.wait()
                continue
            try:
                async with asyncio.timeout(timeout):
                    await self.wake.wait()
            except TimeoutError:
                return None
        out: list[Rec | str] = []
        if self.skipped:
            out.append(f"skipped:{self.skipped}")
            self.skipped = 0
        out.extend(self.queue)
        self.queue.clear()
        return out

    def advance(self, rec: Rec) -> str:
        """Move the cursor past `rec`; the position text to send with it."""
        self.cursor[rec.partition] = rec.offset + 1
        return format_position(self.cursor)

    async def next(self, timeout: float) -> Rec | str | None:
        """The next item, a pending ``skipped:N`` notice first; None after `timeout` idle."""
        if self.skipped:
            n, self.skipped = self.skipped, 0
            return f"skipped:{n}"
        while not self.queue:
            if self.dropped:
                return "dropped"
            self.wake.clear()
            try:
                async with asyncio.timeout(timeout):  # no extra task: a wake-up costs one loop turn
                    await self.wake.wait()
            except TimeoutError:
                return None
            if self.skipped:
                n, self.skipped = self.skipped, 0
                return f"skipped:{n}"
        item = self.queue.popleft()
        if isinstance(item, Rec):
            self.cursor[item.partition] = item.offset + 1
        return item


class TopicHub:
    """Reads one topic (all partitions, no group) and fans records out to clients."""

    def __init__(self, route: PushRoute, settings: ClusterSettings) -> None:
        self.route, self.settings = route, settings
        self.ring: dict[int, deque[Rec]] = {}
        self.ring_bytes: dict[int, int] = {}  # bytes of rendered records per partition's buffer
        self.next_offset: dict[int, int] = {}
        self.everyone: set[Client] = set()  # clients of an unfiltered route
        self.by_user: dict[str, set[Client]] = {}
        self.delivered = 0
        self.count = 0  # connected clients
        self.metadata_interval = 30.0  # seconds between looks for new partitions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()

    # --- the reader thread ---------------------------------------------------------------
    async def start(self, timeout: float = 30.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"gateway-push-{self.route.topic}", daemon=True)
        self._thread.start()
        await asyncio.wait_for(self.ready.wait(), timeout)

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        c = consumer(self.settings, f"riverbed-gateway-push-{uuid.uuid4()}", **{"enable.partition.eof": False, "fetch.wait.max.ms": 10})
        try:
            md = c.list_topics(self.route.topic, timeout=20).topics.get(self.route.topic)
            if md is None or md.error is not None:
                raise RuntimeError(f"topic {self.route.topic} is not available: {md.error if md else 'missing'}")
            assign = []
            for p in md.partitions:
                low, high = c.get_watermark_offsets(TopicPartition(self.route.topic, p), timeout=20)
                start = max(low, high - self.route.replay)
                assign.append(TopicPartition(self.route.topic, p, start))
                self.next_offset[p] = start
                self.ring[p] = deque(maxlen=max(1, self.route.replay))
            c.assign(assign)
            known = set(md.partitions)
            loop.call_soon_threadsafe(self.ready.set)
            checked = time.monotonic()
            while not self._stop.is_set():
                if time.monotonic() - checked > self.metadata_interval:
                    checked = time.monotonic()
                    known |= self._new_partitions(c, known, loop)
                # consume(n, timeout) waits for n records or the timeout: wait for the first
                # record only, then take what else is already there
                first = c.poll(0.1)
                msgs = [] if first is None else [first, *c.consume(999, 0)]
                recs = []
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("push %s: %s", self.route.path, err)
                        continue
                    recs.append(self._rec(m))
                if recs:
                    # wait for the loop to take the batch: the consumer never runs ahead of fan-out
                    fut = asyncio.run_coroutine_threadsafe(self._dispatch(recs), loop)
                    while not self._stop.is_set():
                        try:
                            fut.result(0.5)
                            break
                        except TimeoutError:
                            continue
        except Exception:
            log.exception("push %s: the topic reader stopped", self.route.path)
        finally:
            c.close()

    def _new_partitions(self, c: Any, known: set[int], loop: asyncio.AbstractEventLoop) -> set[int]:
        """Partitions added to the topic since the last look, assigned from their start."""
        try:
            md = c.list_topics(self.route.topic, timeout=5).topics.get(self.route.topic)
        except Exception as exc:
            log.warning("push %s: metadata not refreshed: %s", self.route.path, exc)
            return set()
        new = set(md.partitions) - known if md is not None and md.error is None else set()
        if new:
            log.info("push %s: new partitions %s of %s", self.route.path, sorted(new), self.route.topic)
            for p in new:
                asyncio.run_coroutine_threadsafe(self._add_partition(p), loop).result(10)
            c.incremental_assign([TopicPartition(self.route.topic, p, 0) for p in sorted(new)])
        return new

    async def _add_partition(self, p: int) -> None:
        self.ring.setdefault(p, deque(maxlen=max(1, self.route.replay)))
        self.next_offset.setdefault(p, 0)

    def _rec(self, m: Any) -> Rec:
        key, value = m.key(), m.value()
        user: str | None = None
        if self.route.filter == "key":
            user = key.decode("utf-8", "replace") if key is not None else None
        elif self.route.filter == "field" and value is not None:
            try:
                found = json_path(json.loads(value), self.route.field or "")
            except (ValueError, RecursionError):
                found = None
            user = None if found is None else (found if isinstance(found, str) else json.dumps(found))
        ts = m.timestamp()[1]
        return Rec(m.partition(), m.offset(), user, render(m.topic(), m.partition(), m.offset(), key, value, ts))

    async def _dispatch(self, recs: list[Rec]) -> None:
        filtered = self.route.filter is not None
        # hand out at most half a client queue at a time, then let the writers drain: a client
        # that keeps up never overflows however large the consumer's batch
        chunk = max(1, self.route.queue // 2)
        for i, rec in enumerate(recs):
            if i and i % chunk == 0:
                await asyncio.sleep(0)
            self._keep(rec)
            self.next_offset[rec.partition] = rec.offset + 1
            targets = self.by_user.get(rec.user, ()) if filtered and rec.user is not None else (() if filtered else self.everyone)
            for client in targets:
                client.offer(rec)
                self.delivered += 1

    def _keep(self, rec: Rec) -> None:
        """Append to the replay buffer, which holds at most `replay` records per partition and
        `replay_bytes` per route (split evenly over the partitions); the oldest go first."""
        p = rec.partition
        ring = self.ring.setdefault(p, deque(maxlen=max(1, self.route.replay)))
        used = self.ring_bytes.get(p, 0)
        if ring.maxlen is not None and len(ring) == ring.maxlen:
            used -= len(ring[0].body)
        ring.append(rec)
        used += len(rec.body)
        cap = self.route.replay_bytes // max(1, len(self.ring))
        while len(ring) > 1 and used > cap:
            used -= len(ring.popleft().body)
        self.ring_bytes[p] = used

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for client in self.clients():
            client.drop()

    # --- clients ---------------------------------------------------------------------------
    def clients(self) -> list[Client]:
        return [*self.everyone, *(c for s in self.by_user.values() for c in s)]

    def _ring_start(self, p: int) -> int:
        ring = self.ring[p]
        return ring[0].offset if ring else self.next_offset[p]

    async def subscribe(self, user: str | None, position: dict[int, int] | None) -> Client:
        """A new client at `position` (None: from now on). Records between the position and the
        replay buffer are read from the log first (a temporary consumer), then the buffer's
        records after the position are queued, and the client joins the fan-out, with no gap
        and no repeat. A position older than the log's start gets a ``reset`` notice."""
        r = self.route
        if self.count >= r.max_clients:
            raise JsonError(503, 50301, f"This route has its maximum of {r.max_clients} connections")
        if r.filter and user is not None and len(self.by_user.get(user, ())) >= r.max_per_user:
            raise JsonError(429, 429, f"This user has its maximum of {r.max_per_user} connections on this route")
        # while it catches up a client is behind, not slow: too many records skip it ahead
        client = Client(user if r.filter else None, r.queue, "skip", dict(self.next_offset))
        position = {p: o for p, o in (position or {}).items() if p in self.ring}
        for _ in range(5):  # the buffer may move on while we read: read the new gap too
            gaps = {p: (start, self._ring_start(p)) for p, start in position.items() if start < self._ring_start(p)}
            if not gaps:
                break
            recs, reached, reset, skipped = await asyncio.to_thread(self._read_gaps, gaps, client.user, client.limit)
            if reset:
                client.notice("reset")
            client.skipped += skipped
            for rec in recs:
                client.offer(rec)
            position.update(reached)
        filtered = r.filter is not None
        for p, start in sorted(position.items()):
            if start < self._ring_start(p):
                client.notice("reset")  # still behind after the reads: jump to the buffer
            for rec in self.ring[p]:
                if rec.offset >= start and (not filtered or rec.user == client.user):
                    client.offer(rec)
            client.cursor[p] = min(start, self.next_offset[p])
        client.overflow = r.overflow
        if r.filter is None:
            self.everyone.add(client)
        elif client.user is not None:
            self.by_user.setdefault(client.user, set()).add(client)
        self.count += 1
        return client

    def _read_gaps(self, gaps: dict[int, tuple[int, int]], user: str | None, limit: int) -> tuple[list[Rec], dict[int, int], bool, int]:
        """Records of `user` (all when None and unfiltered) in [start, end) per partition, from
        the log. Keeps the last `limit` (the rest count as skipped); stops after
        CATCHUP_SCAN records or CATCHUP_SECONDS. -> (records, reached offset per partition,
        whether the log had lost part of a range, skipped)."""
        filtered = self.route.filter is not None
        c = consumer(self.settings, f"riverbed-gateway-catchup-{uuid.uuid4()}", **{"enable.partition.eof": True})
        kept: deque[Rec] = deque(maxlen=limit)
        seen = skipped = 0
        reached: dict[int, int] = {}
        reset = False
        try:
            assign = []
            for p, (start, end) in gaps.items():
                low, _high = c.get_watermark_offsets(TopicPartition(self.route.topic, p), timeout=10)
                if start < low:
                    reset, start = True, low
                reached[p] = start
                if start < end:
                    assign.append(TopicPartition(self.route.topic, p, start))
            pending = {tp.partition: gaps[tp.partition][1] for tp in assign}
            if not assign:
                return [], reached, reset, 0
            c.assign(assign)
            deadline = time.monotonic() + CATCHUP_SECONDS
            while pending and seen < CATCHUP_SCAN and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is None:
                    continue
                err = m.error()
                part = m.partition()
                if part is None or part not in pending:
                    continue
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        reached[part] = max(reached[part], pending.pop(part))
                    continue
                offset = m.offset()
                assert offset is not None
                if offset >= pending[part]:
                    reached[part] = max(reached[part], pending.pop(part))
                    continue
                seen += 1
                reached[part] = offset + 1
                rec = self._rec(m)
                if not filtered or rec.user == user:
                    if len(kept) == limit:
                        skipped += 1
                    kept.append(rec)
            if pending:
                reset = True  # gave up on a long gap: the client jumps to the buffer
            return list(kept), reached, reset, skipped
        finally:
            c.close()

    def unsubscribe(self, client: Client) -> None:
        if client.unsubscribed:
            return
        client.unsubscribed = True
        self.count -= 1
        self.everyone.discard(client)
        if client.user is not None:
            group = self.by_user.get(client.user)
            if group is not None:
                group.discard(client)
                if not group:
                    del self.by_user[client.user]

    def call_soon(self, fn: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn)

    def disconnect_all(self) -> int:
        """Drop every client (they reconnect and resume); for tests and operators."""
        clients = self.clients()
        for client in clients:
            client.drop()
        return len(clients)
