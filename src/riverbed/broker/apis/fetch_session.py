"""Fetch sessions (KIP-227) applied to Fetch requests and responses; the session rules live
in ``coordinator/fetch_sessions.py``.

Partitions are keyed by ``(topic name, partition)`` before Fetch v13 and by
``(topic id, partition)`` from v13 on (the request names topics by id).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from riverbed.coordinator.fetch_sessions import ContextKind, FetchContext, PartitionState
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.primitives import RecordsValue
from riverbed.storage.api import PartitionLog

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

Key = tuple[str | uuid.UUID, int]


def _topic_key(version: int, name: str, topic_id: uuid.UUID) -> str | uuid.UUID:
    return topic_id if version >= 13 else name


def open_context(broker: Broker, version: int, req: FetchRequest) -> FetchContext | None:
    """The session context of a request (None before v7, which has no sessions)."""
    if version < 7:
        return None
    fetch_data = (  # (a generator: a sessionless fetch never lists its partitions)
        ((_topic_key(version, ft.topic, ft.topic_id), fp.partition), fp.fetch_offset, fp.partition_max_bytes)
        for ft in req.topics
        for fp in ft.partitions
    )
    forgotten = [(_topic_key(version, ft.topic, ft.topic_id), p) for ft in req.forgotten_topics_data for p in ft.partitions]
    ctx = broker.fetch_sessions.new_context(req.session_id, req.session_epoch, version >= 13, fetch_data, forgotten, broker.now_ms())
    if ctx.kind is ContextKind.ERROR:
        log.info("fetch session %d epoch %d refused: error %d", req.session_id, req.session_epoch, ctx.error_code)
    return ctx


def error_response(ctx: FetchContext) -> FetchResponse:
    """Kafka's answer to an unusable session: the error, session id 0, no partitions."""
    return FetchResponse(throttle_time_ms=0, error_code=ctx.error_code, session_id=0, responses=[])


def session_request(req: FetchRequest, ctx: FetchContext) -> FetchRequest:
    """An incremental request rewritten as the full list of the session's partitions (in
    the session's order, consecutive partitions of a topic grouped), for the reader. The list
    is kept with the session until its partitions, offsets or order change."""
    session = ctx.session
    assert session is not None
    cached = session.derived
    if isinstance(cached, tuple) and cached[0] == session.generation:
        return replace(req, topics=cached[1], forgotten_topics_data=[])
    topics: list[FetchRequest.FetchTopic] = []
    last: object = None
    for key, offset, max_bytes in ctx.fetches:
        topic, partition = cast(Key, key)
        if not topics or topic != last:
            if isinstance(topic, uuid.UUID):
                topics.append(FetchRequest.FetchTopic(topic="", topic_id=topic, partitions=[]))
            else:
                topics.append(FetchRequest.FetchTopic(topic=topic, partitions=[]))
            last = topic
        topics[-1].partitions.append(FetchRequest.FetchPartition(partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes))
    session.derived = (session.generation, topics)
    return replace(req, topics=topics, forgotten_topics_data=[])


def quiet(version: int, ctx: FetchContext | None, read_committed: bool) -> Callable[[FetchRequest.FetchTopic, FetchRequest.FetchPartition, PartitionLog], bool] | None:
    """For an incremental fetch: a test that a session partition has nothing new for the
    client (its fetch offset is at the end of what it may read, and the high watermark, last
    stable offset and log start offset are what it was last told), so that it need not be
    read at all; such partitions would be left out of the response anyway."""
    if ctx is None or ctx.kind is not ContextKind.INCREMENTAL or ctx.session is None:
        return None
    cached_parts = ctx.session.partitions

    def is_quiet(ft: FetchRequest.FetchTopic, fp: FetchRequest.FetchPartition, plog: PartitionLog) -> bool:
        cached = cached_parts.get((_topic_key(version, ft.topic, ft.topic_id), fp.partition))
        if cached is None:
            return False
        hw = plog.high_watermark
        if cached.high_watermark != hw or cached.log_start_offset != plog.log_start_offset:
            return False
        if cached.last_stable_offset == hw:
            # no open transaction below the high watermark when last sent; one that began
            # since starts at or above it, so the last stable offset is still the high
            # watermark until the high watermark moves (saves computing it)
            lso = hw
        else:
            lso = plog.last_stable_offset
            if lso != cached.last_stable_offset:
                return False
        return fp.fetch_offset == (lso if read_committed else hw)

    return is_quiet


_FLAT = (bytes, bytearray, memoryview)


def _size(records: RecordsValue | None) -> int:
    if records is None:
        return 0
    if isinstance(records, _FLAT):
        return len(records)
    return sum(len(b) for b in records)


def finish(broker: Broker, version: int, ctx: FetchContext | None, resp: FetchResponse) -> FetchResponse:
    """Set the response's session id and, for an incremental fetch, keep only the partitions
    with something new for the client (Kafka's rules, see the coordinator module)."""
    if ctx is None:
        return resp
    if ctx.kind is ContextKind.SESSIONLESS:  # nothing to remember, everything is sent
        resp.session_id = 0
        return resp
    states: dict[object, PartitionState] = {}
    for tr in resp.responses:
        topic = _topic_key(version, tr.topic, tr.topic_id)
        for pd in tr.partitions:
            states[(topic, pd.partition_index)] = PartitionState(
                _size(pd.records),
                pd.error_code,
                pd.high_watermark,
                pd.last_stable_offset,
                pd.log_start_offset,
            )
    session_id, send = broker.fetch_sessions.finish(ctx, states, broker.now_ms())
    resp.session_id = session_id
    if send is not None:
        kept = []
        for tr in resp.responses:
            topic = _topic_key(version, tr.topic, tr.topic_id)
            tr.partitions = [pd for pd in tr.partitions if (topic, pd.partition_index) in send]
            if tr.partitions:
                kept.append(tr)
        resp.responses = kept
    return resp
