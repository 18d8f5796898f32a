"""Fetch (key 1): long poll on max_wait_ms / min_bytes, woken by appends and fsyncs.

Each partition's data starts at the batch containing fetch_offset and is made of whole
batches read straight from the segment files (never re-encoded). max_bytes and
partition_max_bytes are soft limits (KIP-74): the first batch of the first partition with
data is returned even when it is larger, so a consumer never stalls on a big batch.
Fetch sessions (KIP-227, v7+) are kept by ``fetch_session.py``: an incremental request is
read as the full list of its session's partitions, and the response keeps only those with
news for the client.

Nothing new (issue 9): a partition whose fetch offset is at the end of what the client may
read is answered without a log read, with a shared, immutable :class:`_Quiet` answer (keyed
by its values, encoded once per version); a long poll that ends with nothing changed returns
the answer it built at its start instead of reading every partition again; a connection
that repeats the bytes of its last Fetch (librdkafka's full fetches of an idle group) reuses
that request's decoding.

Tiered storage: a fetch offset below a partition's local log start (but not below its log
start) is served from the object store, which blocks; such a request is built on the
broker's remote-read pool instead of the event loop. Local reads stay on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from riverbed.coordinator.fetch_sessions import ContextKind, FetchContext
from riverbed.protocol.errors import DecodeError, ErrorCode, KafkaError
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.primitives import Reader, Writer
from riverbed.protocol.records.batch import iter_batches
from riverbed.protocol.varint import decode_uvarint
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo
from riverbed.storage.api import NeedsRemote, PartitionLog

from . import fetch_session

if TYPE_CHECKING:
    from riverbed.metadata.topics import Topic

    from ..broker import Broker

Resp = FetchResponse
log = logging.getLogger(__name__)
READ_COMMITTED = 1


def _partition_error(index: int, code: int) -> Resp.PartitionData:
    return Resp.PartitionData(
        partition_index=index,
        error_code=code,
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
        aborted_transactions=None,
        preferred_read_replica=-1,
        records=b"",  # as Kafka (MemoryRecords.EMPTY): librdkafka rejects a null set
    )


class _Quiet(Resp.PartitionData):
    """The answer for a partition with nothing new: shared by every request that finds the
    same values (never modified once made), its bytes encoded once per version."""

    __slots__ = ("_encoded",)

    def __init__(self, index: int, hw: int, lso: int, log_start: int, read_committed: bool) -> None:
        super().__init__(
            partition_index=index,
            error_code=0,
            high_watermark=hw,
            last_stable_offset=lso,
            log_start_offset=log_start,
            aborted_transactions=[] if read_committed else None,
            preferred_read_replica=-1,
            records=b"",
        )
        self._encoded: tuple[int, bytes] | None = None

    def write(self, w: Writer, version: int) -> None:
        encoded = self._encoded
        if encoded is None or encoded[0] != version:
            t = Writer()
            Resp.PartitionData.write(self, t, version)
            encoded = self._encoded = (version, t.getvalue())
        w.raw(encoded[1])


_QUIET_MAX = 100_000  # answers kept; the cache starts again when full
_quiet_answers: dict[tuple[int, int, int, int, bool], _Quiet] = {}


def _quiet_answer(index: int, hw: int, lso: int, log_start: int, read_committed: bool) -> _Quiet:
    key = (index, hw, lso, log_start, read_committed)
    answer = _quiet_answers.get(key)
    if answer is None:
        if len(_quiet_answers) >= _QUIET_MAX:
            _quiet_answers.clear()
        answer = _quiet_answers[key] = _Quiet(index, hw, lso, log_start, read_committed)
    return answer


class _QuietFetch(FetchResponse):
    """A whole answer of quiet partitions (nothing new, no error), for a fetch without a
    session: kept by the connection with the broker's change count when it was read, and
    answered again, bytes and all, while the same request comes and nothing changed in the
    broker (librdkafka's idle consumer repeats its full fetch every ``fetch.wait.max.ms``).
    Never modified once made; its bytes encoded once per version; nothing in it to count."""

    __slots__ = ("_encoded",)
    quiet_answer = True  # (BrokerStats: nothing to count)

    def __init__(self, responses: list[Resp.FetchableTopicResponse]) -> None:
        super().__init__(throttle_time_ms=0, error_code=0, session_id=0, responses=responses)
        self._encoded: tuple[int, bytes] | None = None

    def write(self, w: Writer, version: int) -> None:
        encoded = self._encoded
        if encoded is None or encoded[0] != version:
            t = Writer()
            FetchResponse.write(self, t, version)
            encoded = self._encoded = (version, t.getvalue())
        w.raw(encoded[1])


_PART = 33  # a v13+ FetchPartition without tagged fields: 4 + 4 + 8 + 4 + 8 + 4 bytes, then 0 tags


Layout = tuple[bytes, dict[bytes, bytes], bytes, dict[bytes, list[bytes]]]


def _blocks(body: bytes, version: int) -> tuple[bytes, dict[bytes, list[bytes]], bytes] | None:
    """A v13+ request body split as (the fields before the topics, topic id -> the byte blocks
    of its partition entries in request order, the fields after the topics), when no partition
    entry has a tagged field (each is 33 bytes); None otherwise."""
    try:
        pos = 21 if version >= 15 else 25
        prefix = body[:pos]
        count, pos = decode_uvarint(body, pos, 5)
        parts: dict[bytes, list[bytes]] = {}
        for _ in range(count - 1):
            tid = body[pos:pos + 16]
            n, pos = decode_uvarint(body, pos + 16, 5)
            end = pos + (n - 1) * _PART
            if n < 1 or end >= len(body) or body[end] != 0:
                return None
            block = body[pos:end]
            if block[_PART - 1::_PART].strip(b"\0"):  # an entry with tagged fields
                return None
            parts.setdefault(tid, []).append(block)
            pos = end + 1
        return prefix, parts, body[pos:]
    except (DecodeError, IndexError):
        return None


def _entries(joined: bytes) -> list[bytes]:
    return sorted(joined[i:i + _PART] for i in range(0, len(joined), _PART))


def _same_partitions(body: bytes, version: int, ref: Layout) -> bool:
    """Whether ``body`` asks for exactly what the reference request asked for (the same
    fields, the same partition entries of each topic) in another order. librdkafka rotates its
    fetch list by a partition each time (fairness), so an idle member's requests differ in
    order only: per topic, the entries joined in request order are mostly the reference's
    bytes as they are; a topic whose entries moved is compared as a sorted list (two such
    topics at most: more means offsets moved, and the request is decoded), and its order then
    becomes the one the next request is compared with."""
    prefix, joined, suffix, ordered = ref
    if not body.startswith(prefix) or not body.endswith(suffix):
        return False
    got = _blocks(body, version)
    if got is None or got[0] != prefix or got[2] != suffix or len(got[1]) != len(joined):
        return False
    moved: list[tuple[bytes, bytes]] = []
    for tid, blocks in got[1].items():
        want = joined.get(tid)
        entries = b"".join(blocks)
        if want is None or len(want) != len(entries):
            return False
        if entries != want:
            if len(moved) == 2:  # a rotation step moves one topic's entries: offsets moved
                return False
            sorted_want = ordered.get(tid)
            if sorted_want is None:
                sorted_want = ordered[tid] = _entries(want)
            if _entries(entries) != sorted_want:
                return False
            moved.append((tid, entries))
    for tid, entries in moved:  # the next request is compared with this one's order
        joined[tid] = entries
    return True


def _layout(body: bytes, version: int, req: FetchRequest) -> Layout | None:
    """The reference layout of a decoded v13+ request (None when its bytes are not plain), after
    checking it against the decoding (entries per topic)."""
    got = _blocks(body, version)
    if got is None:
        return None
    joined = {tid: b"".join(blocks) for tid, blocks in got[1].items()}
    counts: dict[bytes, int] = {}
    for ft in req.topics:
        key = ft.topic_id.bytes
        counts[key] = counts.get(key, 0) + len(ft.partitions)
    if counts != {tid: len(b) // _PART for tid, b in joined.items()}:
        return None
    return got[0], joined, got[2], {}


def decode_request(conn: ConnectionInfo, frame: bytearray, offset: int, version: int) -> FetchRequest:
    """The Fetch request in ``frame`` from ``offset``; when the connection sent the same bytes
    (same version) last time, the request decoded then (handlers never modify a request). From
    v13 a request that differs from that one only by the order of its partitions (librdkafka's
    rotation) is answered with the earlier request too: the same partitions, offsets and
    settings, so the same answer but for the order of its partitions (which no client reads
    into: each partition's answer stands alone)."""
    body = bytes(memoryview(frame)[offset:])
    last = conn.state.get("fetch_request")
    if last is not None and last[0] == version and (last[1] == body or (last[3] is not None and _same_partitions(body, version, last[3]))):
        return last[2]  # type: ignore[no-any-return]
    req = FetchRequest.read(Reader(frame, offset), version)
    conn.state["fetch_request"] = (version, body, req, _layout(body, version, req) if version >= 13 else None)
    return req


Read = tuple[FetchResponse, int, bool]
Skip = Callable[[FetchRequest.FetchTopic, FetchRequest.FetchPartition, PartitionLog], bool]


def _read_all(broker: Broker, version: int, req: FetchRequest, denied: frozenset[str], remote_ok: bool = False, skip: Skip | None = None) -> Read | None:
    """Build a response from what is readable now: (response, bytes of records, any error).
    None when a partition needs a remote read and ``remote_ok`` is false (on the loop).
    Partitions for which ``skip`` is true are left out (an incremental fetch session's
    partitions with nothing new, see ``fetch_session.quiet``)."""
    remaining = req.max_bytes if version >= 3 else 2**31 - 1
    min_one = True
    total = 0
    errors = False
    read_committed = req.isolation_level == READ_COMMITTED
    topics_out: list[Resp.FetchableTopicResponse] = []
    for ft in req.topics:
        name = ft.topic
        topic = broker.topics.get(name) if name else None
        if topic is None and version >= 13:
            topic = broker.topics.by_id(ft.topic_id)
        parts: list[Resp.PartitionData] = []
        topics_out.append(Resp.FetchableTopicResponse(topic=name, topic_id=ft.topic_id, partitions=parts))
        for fp in ft.partitions:
            if name in denied or (topic is not None and topic.name in denied):  # before any existence check (Kafka)
                parts.append(_partition_error(fp.partition, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                errors = True
                continue
            plog = broker.partition(topic.name, fp.partition) if topic is not None else None
            if plog is None:
                code = ErrorCode.UNKNOWN_TOPIC_ID if version >= 13 and topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                parts.append(_partition_error(fp.partition, code))
                errors = True
                continue
            if skip is not None and skip(ft, fp, plog):
                continue
            offset = fp.fetch_offset
            hw = plog.high_watermark
            if offset <= hw:  # nothing new when the offset is the end of what may be read
                lso = min(plog.last_stable_offset, hw)  # (hw read first: never above it)
                if offset == (lso if read_committed else hw):
                    log_start = plog.log_start_offset
                    if log_start <= offset and plog.local_log_start_offset <= offset:
                        parts.append(_quiet_answer(fp.partition, hw, lso, log_start, read_committed))
                        continue
            if offset < plog.local_log_start_offset and offset >= plog.log_start_offset and not remote_ok:
                return None  # tiered data: the caller redoes the request off the event loop
            limit = min(fp.partition_max_bytes, remaining)
            try:
                if read_committed:  # stop at the last stable offset (open transactions)
                    result = plog.read(fp.fetch_offset, max(limit, 0), min_one_batch=min_one, isolation_upper=plog.last_stable_offset, remote_ok=remote_ok)
                else:
                    result = plog.read(fp.fetch_offset, max(limit, 0), min_one_batch=min_one, remote_ok=remote_ok)
                aborted: list[Resp.AbortedTransaction] | None = None
                if read_committed:
                    aborted = [Resp.AbortedTransaction(producer_id=pid, first_offset=first) for pid, first in _aborted(plog, fp.fetch_offset, result.records, remote_ok)]
            except NeedsRemote:
                return None  # tiered away since the check above: redo it off the event loop
            except KafkaError as exc:
                pd = _partition_error(fp.partition, exc.code)
                pd.high_watermark = plog.high_watermark
                pd.last_stable_offset = plog.last_stable_offset
                pd.log_start_offset = plog.log_start_offset
                parts.append(pd)
                errors = True
                continue
            size = len(result.records)
            if size:
                min_one = False
                remaining -= size
                total += size
            parts.append(
                Resp.PartitionData(
                    partition_index=fp.partition,
                    error_code=0,
                    high_watermark=result.high_watermark,
                    last_stable_offset=result.last_stable_offset,
                    log_start_offset=result.log_start_offset,
                    aborted_transactions=aborted,
                    preferred_read_replica=-1,
                    records=result.records,
                )
            )
    resp = FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=topics_out)
    return resp, total, errors


def _aborted(plog: PartitionLog, fetch_offset: int, records: bytes | memoryview, remote_ok: bool) -> list[tuple[int, int]]:
    """The aborted transactions a read_committed consumer needs to filter ``records``: those
    whose marker is at or after the fetch offset and which began before the data's end."""
    if not records:
        return []
    end = fetch_offset
    for header in iter_batches(records):
        end = header.next_offset
    return plog.aborted_transactions(fetch_offset, end, remote_ok=remote_ok)


def _read_blocking(broker: Broker, version: int, req: FetchRequest, denied: frozenset[str], skip: Skip | None) -> Read:
    read = _read_all(broker, version, req, denied, remote_ok=True, skip=skip)
    assert read is not None
    return read


async def _read_async(broker: Broker, version: int, req: FetchRequest, denied: frozenset[str], skip: Skip | None) -> Read:
    """``_read_all`` on the loop, or on the remote-read pool when tiered data is needed."""
    read = _read_all(broker, version, req, denied, skip=skip)
    if read is None:
        read = await broker.run_remote(_read_blocking, broker, version, req, denied, skip)
    return read


def _denied_topics(broker: Broker, conn: ConnectionInfo, req: FetchRequest) -> frozenset[str]:
    """The requested topics the principal may not READ (none without an authorizer)."""
    if broker.authorizer is None:
        return frozenset()
    names = {ft.topic for ft in req.topics if ft.topic}
    names |= {t.name for ft in req.topics if not ft.topic and (t := broker.topics.by_id(ft.topic_id)) is not None}
    return frozenset(n for n in names if not broker.authorize(conn, AclOperation.READ, ResourceType.TOPIC, n))


def _follower_fetch(broker: Broker, conn: ConnectionInfo, version: int, req: FetchRequest, replica_id: int) -> FetchResponse:
    """A fetch from a follower (replica id >= 0). One node has no followers: as Kafka answers
    a replica that is not in a partition's replica set, NOT_LEADER_OR_FOLLOWER for every
    partition, naming the leader (this node) from v12 and its endpoint from v16 (KIP-951);
    without CLUSTER_ACTION on the cluster, TOPIC_AUTHORIZATION_FAILED."""
    log.info("fetch from replica %d refused (%s): a single node has no followers", replica_id, conn.peer)
    allowed = broker.authorize(conn, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME)
    node = broker.config.node_id
    topics_out = []
    for ft in req.topics:
        topic = broker.topics.get(ft.topic) if ft.topic else broker.topics.by_id(ft.topic_id)
        parts = []
        for fp in ft.partitions:
            if not allowed:
                code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or broker.partition(topic.name, fp.partition) is None:
                code = ErrorCode.UNKNOWN_TOPIC_ID if version >= 13 and topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                code = ErrorCode.NOT_LEADER_OR_FOLLOWER
            pd = _partition_error(fp.partition, code)
            if code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                pd.current_leader = Resp.LeaderIdAndEpoch(leader_id=node, leader_epoch=-1)
            parts.append(pd)
        topics_out.append(Resp.FetchableTopicResponse(topic=ft.topic, topic_id=ft.topic_id, partitions=parts))
    endpoints = []
    if allowed and version >= 16 and any(pd.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER for t in topics_out for pd in t.partitions):
        host, port = broker.advertised(conn.listener)
        endpoints = [Resp.NodeEndpoint(node_id=node, host=host, port=port, rack=None)]
    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=topics_out, node_endpoints=endpoints)


def handle_fetch(broker: Broker, conn: ConnectionInfo, version: int, req: FetchRequest) -> FetchResponse | asyncio.Future[FetchResponse | None]:
    replica_id = req.replica_state.replica_id if version >= 15 else req.replica_id
    if replica_id >= 0:
        return _follower_fetch(broker, conn, version, req, replica_id)
    ctx = fetch_session.open_context(broker, version, req)
    if ctx is not None:
        if ctx.kind is ContextKind.ERROR:
            return fetch_session.error_response(ctx)
        if ctx.kind is ContextKind.INCREMENTAL:
            req = fetch_session.session_request(req, ctx)
    denied = _denied_topics(broker, conn, req)
    skip = fetch_session.quiet(version, ctx, req.isolation_level == READ_COMMITTED)
    sessionless = ctx is None or ctx.kind is ContextKind.SESSIONLESS
    last = conn.state.get("quiet_fetch") if sessionless else None
    if last is not None and last[0] is req and last[1] == broker.changes and last[2] == denied:
        # the same request (decoded once) and nothing changed since its quiet answer was read
        changes, resp = last[1], last[3]
        if req.max_wait_ms <= 0:
            return fetch_session.finish(broker, version, ctx, resp)
        return asyncio.ensure_future(_finish_later(broker, version, ctx, _long_poll(broker, version, req, denied, skip, resp, changes)))
    changes = broker.changes  # before the read: a change after it is seen by the long poll
    read = _read_all(broker, version, req, denied, skip=skip)
    if read is None:
        return asyncio.ensure_future(_finish_later(broker, version, ctx, _fetch_remote(broker, version, req, denied, skip)))
    resp, total, errors = read
    if errors or total >= max(req.min_bytes, 1) or req.max_wait_ms <= 0 or not any(ft.partitions for ft in req.topics):
        if sessionless and not errors and total == 0 and any(ft.partitions for ft in req.topics):
            resp = _QuietFetch(resp.responses)
            conn.state["quiet_fetch"] = (req, changes, denied, resp)
        return fetch_session.finish(broker, version, ctx, resp)  # no partitions: answered at once (Kafka)
    if sessionless and total == 0:  # (no errors here)
        resp = _QuietFetch(resp.responses)
        conn.state["quiet_fetch"] = (req, changes, denied, resp)
    return asyncio.ensure_future(_finish_later(broker, version, ctx, _long_poll(broker, version, req, denied, skip, resp, changes)))


async def _finish_later(broker: Broker, version: int, ctx: FetchContext | None, reading: Awaitable[FetchResponse]) -> FetchResponse:
    return fetch_session.finish(broker, version, ctx, await reading)


async def _fetch_remote(broker: Broker, version: int, req: FetchRequest, denied: frozenset[str], skip: Skip | None) -> FetchResponse:
    changes = broker.changes
    resp, total, errors = await broker.run_remote(_read_blocking, broker, version, req, denied, skip)
    if errors or total >= max(req.min_bytes, 1) or req.max_wait_ms <= 0:
        return resp
    return await _long_poll(broker, version, req, denied, skip, resp, changes)


async def _long_poll(broker: Broker, version: int, req: FetchRequest, denied: frozenset[str], skip: Skip | None, first: FetchResponse, changes: int) -> FetchResponse:
    """Wait for data (or max_wait_ms). ``first`` is the answer read when the request came,
    ``changes`` the broker's change count (``Broker.notify`` calls: appends, durability,
    transaction markers, truncation, DeleteRecords, retention, topic deletion) before that
    read. While nothing happens in the broker the wait costs nothing per partition, and
    ``first`` is returned at the deadline without reading every partition again (an idle
    consumer's fetch). After the first event the partitions are watched one by one against
    what ``first`` showed, as before."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.max_wait_ms / 1000
    topics = {ft.topic or ft.topic_id: _topic_of(broker, ft) for ft in req.topics}
    try:
        await asyncio.wait_for(broker.wait_until(lambda: broker.changes != changes), req.max_wait_ms / 1000)
    except (TimeoutError, KafkaError):
        if broker.changes == changes and all(_topic_of(broker, ft) is topics[ft.topic or ft.topic_id] for ft in req.topics):
            return first
        resp, _, _ = await _read_async(broker, version, req, denied, skip)
        return resp
    read_committed = req.isolation_level == READ_COMMITTED
    told = {(tr.topic or tr.topic_id, pd.partition_index): pd.last_stable_offset if read_committed else pd.high_watermark for tr in first.responses for pd in tr.partitions}
    interest = []
    seen: list[int] = []  # what the first answer showed (a partition it skipped: as it is now)
    for ft in req.topics:
        topic = _topic_of(broker, ft)
        if topic is None:
            continue
        for fp in ft.partitions:
            plog = broker.partition(topic.name, fp.partition)
            if plog is not None:
                interest.append((plog, fp.fetch_offset))
                end = told.get((ft.topic or ft.topic_id, fp.partition))
                seen.append(end if end is not None else (plog.last_stable_offset if read_committed else plog.high_watermark))
    need = max(req.min_bytes, 1)
    # what makes data readable: the high watermark, or the last stable offset for read_committed
    if read_committed:

        def visible(plog: PartitionLog) -> int:
            return plog.last_stable_offset

    else:

        def visible(plog: PartitionLog) -> int:
            return plog.high_watermark

    def ready() -> bool:
        """New data (or a truncation) on any requested partition since the last read."""
        for (plog, offset), end in zip(interest, seen, strict=True):
            if visible(plog) != end or offset < plog.log_start_offset:
                return True
        return False

    while True:
        timeout = deadline - loop.time()
        if timeout <= 0:
            break
        try:
            await asyncio.wait_for(broker.wait_until(ready), timeout)
        except (TimeoutError, KafkaError):
            break
        # (taken before the read: a change in between makes ready() true, one read more)
        seen = [visible(plog) for plog, _ in interest]
        resp, total, errors = await _read_async(broker, version, req, denied, skip)
        if errors or total >= need:
            return resp
    resp, _, _ = await _read_async(broker, version, req, denied, skip)
    return resp


def _topic_of(broker: Broker, ft: FetchRequest.FetchTopic) -> Topic | None:
    return broker.topics.get(ft.topic) if ft.topic else broker.topics.by_id(ft.topic_id)
