"""Incremental fetch sessions (KIP-227): a pure state machine with an injected clock.

A consumer's first full fetch (session id 0, epoch 0) may create a session: the broker
remembers the partitions it asked for (with their fetch offsets and size limits) and what it
last told the client about each (high watermark, last stable offset, log start offset). The
response carries the new session id. Later requests name the session and the next epoch
(1, 2, ... wrapping to 1 after 2**31-1) and list only the partitions that are new or whose
fetch offset or limit changed, plus the partitions to forget. The broker fetches every
partition of the session and answers only those with something new: records, a changed high
watermark / last stable offset / log start offset, or an error (after an error the cached
high watermark is reset, so the partition is sent again once the error clears).

Request forms, as Kafka's FetchManager reads them:

- ``(id 0, epoch -1)``: a sessionless full fetch, answered with session id 0;
- ``(any id, epoch 0)``: a full fetch; a session named by ``id`` is closed first, and a
  new session is created when the cache has room (or can evict one);
- ``(id, epoch -1)`` with ``id != 0``: close the session, answer a sessionless full fetch;
- ``(id, epoch > 0)``: incremental; FETCH_SESSION_ID_NOT_FOUND when the session is unknown
  (evicted, or from before a restart), INVALID_FETCH_SESSION_EPOCH when the epoch is not the
  one expected, FETCH_SESSION_TOPIC_ID_ERROR when the request does not use topic ids the way
  the session was created (Fetch v13+ names topics by id).

The cache holds at most ``max_slots`` sessions (Kafka's
``max.incremental.fetch.session.cache.slots``, 1000). When it is full, a new session
evicts the least recently used one if that one has been idle for ``eviction_ms`` (Kafka's
``min.incremental.fetch.session.eviction.ms``, 120 s); otherwise the smallest session older
than ``eviction_ms`` if the new one has more partitions; otherwise no session is created
and the full fetch is answered with session id 0 (the client goes on with full fetches).

Partition keys are opaque to this module (the broker uses ``(topic, partition)`` with the
topic's name before v13 and its id from v13 on).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
MAX_SLOTS = 1000
EVICTION_MS = 120_000

# Kafka error codes (the protocol package is below this layer, but these three are all we need)
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71
FETCH_SESSION_TOPIC_ID_ERROR = 106

Key = Hashable


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch``: 1, 2, ..., 2**31-1, then 1 again (0 and -1 are reserved)."""
    return 1 if epoch >= 2**31 - 1 else epoch + 1


@dataclass(slots=True)
class CachedPartition:
    fetch_offset: int
    max_bytes: int
    high_watermark: int = -1  # as last sent to the client (-1: send it next time)
    last_stable_offset: int = -1
    log_start_offset: int = -1


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What a read of one partition found, to compare with what the client was last told."""

    records_size: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int


@dataclass(slots=True)
class FetchSession:
    id: int
    epoch: int  # the epoch the next incremental request must carry
    uses_topic_ids: bool
    created_ms: int
    last_used_ms: int
    partitions: dict[Key, CachedPartition] = field(default_factory=dict)  # in fetch order
    # bumped whenever the partitions, their fetch offsets / limits or their order change, so
    # that the broker can reuse what it derived from them (``derived``, opaque here)
    generation: int = 0
    derived: object = None


class ContextKind(Enum):
    SESSIONLESS = "sessionless"  # full fetch, no session (answered with session id 0)
    FULL = "full"  # full fetch that may create a session once answered
    INCREMENTAL = "incremental"
    ERROR = "error"


@dataclass(slots=True)
class FetchContext:
    """How to answer one Fetch request: which partitions to read (``fetches``: key, fetch
    offset, max bytes, in order) and, through the cache's ``finish``, which to send."""

    kind: ContextKind
    fetches: list[tuple[Key, int, int]]
    error_code: int = 0
    session: FetchSession | None = None
    uses_topic_ids: bool = False


def _changed(cached: CachedPartition, state: PartitionState, update: bool) -> bool:
    """Kafka's CachedPartition.maybeUpdateResponseData: must this partition be in an
    incremental response? With ``update``, remember what is being sent."""
    must = state.records_size > 0
    if state.high_watermark != cached.high_watermark:
        must = True
        if update:
            cached.high_watermark = state.high_watermark
    if state.last_stable_offset != cached.last_stable_offset:
        must = True
        if update:
            cached.last_stable_offset = state.last_stable_offset
    if state.log_start_offset != cached.log_start_offset:
        must = True
        if update:
            cached.log_start_offset = state.log_start_offset
    if state.error_code != 0:
        must = True
        if update:
            cached.high_watermark = -1  # resend once the error clears
    return must


class FetchSessionCache:
    def __init__(self, max_slots: int = MAX_SLOTS, eviction_ms: int = EVICTION_MS, rng: random.Random | None = None) -> None:
        self.max_slots = max_slots
        self.eviction_ms = eviction_ms
        self._rng = rng or random.Random()
        self._sessions: dict[int, FetchSession] = {}  # least recently used first
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    @property
    def partitions(self) -> int:
        return sum(len(s.partitions) for s in self._sessions.values())

    def new_context(
        self,
        session_id: int,
        epoch: int,
        uses_topic_ids: bool,
        fetch_data: Iterable[tuple[Key, int, int]],
        forgotten: Iterable[Key],
        now_ms: int,
    ) -> FetchContext:
        """The context for a request with this session id and epoch, listing ``fetch_data``
        (key, fetch offset, max bytes) and forgetting ``forgotten``."""
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):  # full fetch
            if session_id != INVALID_SESSION_ID:
                self._sessions.pop(session_id, None)  # a full fetch closes the session it names
            # a sessionless fetch keeps nothing: its partitions are not even listed
            fetches = list(fetch_data) if epoch == INITIAL_EPOCH else []
            kind = ContextKind.FULL if epoch == INITIAL_EPOCH else ContextKind.SESSIONLESS
            return FetchContext(kind, fetches, uses_topic_ids=uses_topic_ids)
        session = self._sessions.get(session_id)
        if session is None:
            return FetchContext(ContextKind.ERROR, [], FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            return FetchContext(ContextKind.ERROR, [], INVALID_FETCH_SESSION_EPOCH)
        if session.uses_topic_ids != uses_topic_ids:
            return FetchContext(ContextKind.ERROR, [], FETCH_SESSION_TOPIC_ID_ERROR)
        parts = session.partitions
        before = session.generation
        for key, offset, max_bytes in fetch_data:
            session.generation = before + 1
            cached = parts.get(key)
            if cached is None:
                parts[key] = CachedPartition(offset, max_bytes)
            else:
                cached.fetch_offset = offset
                cached.max_bytes = max_bytes
        for key in forgotten:
            if parts.pop(key, None) is not None:
                session.generation = before + 1
        if not parts:  # nothing left to fetch: the session ends
            del self._sessions[session_id]
            return FetchContext(ContextKind.SESSIONLESS, [], uses_topic_ids=uses_topic_ids)
        session.epoch = next_epoch(session.epoch)
        self._touch(session, now_ms)
        fetches = [(k, c.fetch_offset, c.max_bytes) for k, c in parts.items()]
        return FetchContext(ContextKind.INCREMENTAL, fetches, session=session, uses_topic_ids=uses_topic_ids)

    def finish(self, ctx: FetchContext, states: dict[Key, PartitionState], now_ms: int) -> tuple[int, set[Key] | None]:
        """After the partitions were read: (session id for the response, the keys to send,
        None meaning all). A full context creates its session here; an incremental one
        records what is sent and moves partitions that returned records to the end of the
        session's order, so that the others get their turn under max_bytes (Kafka)."""
        if ctx.kind is ContextKind.FULL:
            session = self._create(ctx, states, now_ms)
            return (session.id if session else INVALID_SESSION_ID), None
        if ctx.kind is not ContextKind.INCREMENTAL:
            return INVALID_SESSION_ID, None
        session = ctx.session
        assert session is not None
        send: set[Key] = set()
        moved: list[Key] = []
        for key, state in states.items():
            cached = session.partitions.get(key)
            if cached is None:
                continue
            if _changed(cached, state, update=True):
                send.add(key)
                if state.records_size > 0:
                    moved.append(key)
        for key in moved:  # fairness: partitions that got data go to the back
            session.partitions[key] = session.partitions.pop(key)
        if moved:
            session.generation += 1
        return session.id, send

    def _create(self, ctx: FetchContext, states: dict[Key, PartitionState], now_ms: int) -> FetchSession | None:
        size = len(ctx.fetches)
        if size == 0 or self.max_slots <= 0:
            return None
        if len(self._sessions) >= self.max_slots and not self._evict_for(size, now_ms):
            return None
        session_id = self._new_id()
        session = FetchSession(session_id, next_epoch(INITIAL_EPOCH), ctx.uses_topic_ids, now_ms, now_ms)
        for key, offset, max_bytes in ctx.fetches:
            cached = CachedPartition(offset, max_bytes)
            state = states.get(key)
            if state is not None:
                _changed(cached, state, update=True)
            session.partitions[key] = cached
        self._sessions[session_id] = session
        return session

    def _evict_for(self, size: int, now_ms: int) -> bool:
        """Make room for a new session of ``size`` partitions, if Kafka's rules allow."""
        lru = next(iter(self._sessions.values()))
        if now_ms - lru.last_used_ms > self.eviction_ms:
            del self._sessions[lru.id]
            self.evictions += 1
            return True
        old = [s for s in self._sessions.values() if now_ms - s.created_ms > self.eviction_ms]
        if not old:
            return False
        victim = min(old, key=lambda s: (len(s.partitions), s.id))
        if size <= len(victim.partitions):
            return False
        del self._sessions[victim.id]
        self.evictions += 1
        return True

    def _touch(self, session: FetchSession, now_ms: int) -> None:
        session.last_used_ms = now_ms
        self._sessions[session.id] = self._sessions.pop(session.id)  # most recently used last

    def _new_id(self) -> int:
        while True:
            session_id = self._rng.randint(1, 2**31 - 1)
            if session_id not in self._sessions:
                return session_id
