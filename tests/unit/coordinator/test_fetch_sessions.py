"""KIP-227 fetch sessions: the pure session cache (contexts, incremental filtering, eviction)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.coordinator.fetch_sessions import (
    FETCH_SESSION_ID_NOT_FOUND,
    FETCH_SESSION_TOPIC_ID_ERROR,
    INVALID_FETCH_SESSION_EPOCH,
    ContextKind,
    FetchSessionCache,
    PartitionState,
    next_epoch,
)


def state(hwm: int, records: int = 0, error: int = 0, lso: int | None = None, start: int = 0) -> PartitionState:
    return PartitionState(records, error, hwm, hwm if lso is None else lso, start)


def open_session(cache: FetchSessionCache, keys: list[str], now: int = 0, hwm: int = 0) -> int:
    ctx = cache.new_context(0, 0, False, [(k, 0, 100) for k in keys], [], now)
    assert ctx.kind is ContextKind.FULL
    session_id, send = cache.finish(ctx, {k: state(hwm) for k in keys}, now)
    assert send is None  # a full response lists everything
    assert session_id != 0
    return session_id


def test_sessionless_full_fetch_creates_nothing() -> None:
    cache = FetchSessionCache()
    ctx = cache.new_context(0, -1, False, [("a", 0, 100)], [], 0)
    assert ctx.kind is ContextKind.SESSIONLESS
    assert cache.finish(ctx, {"a": state(5)}, 0) == (0, None)
    assert len(cache) == 0


def test_incremental_sends_only_changed_partitions() -> None:
    cache = FetchSessionCache()
    sid = open_session(cache, ["a", "b", "c"], hwm=10)
    ctx = cache.new_context(sid, 1, False, [], [], 1)
    assert ctx.kind is ContextKind.INCREMENTAL
    assert [k for k, _, _ in ctx.fetches] == ["a", "b", "c"]
    # nothing changed: nothing sent
    assert cache.finish(ctx, {"a": state(10), "b": state(10), "c": state(10)}, 1) == (sid, set())
    # b has records, c's high watermark moved (no records for us), a unchanged
    ctx = cache.new_context(sid, 2, False, [], [], 2)
    _, send = cache.finish(ctx, {"a": state(10), "b": state(12, records=50), "c": state(11)}, 2)
    assert send == {"b", "c"}
    # the partition that returned data moved to the back (fairness under max_bytes)
    ctx = cache.new_context(sid, 3, False, [], [], 3)
    assert [k for k, _, _ in ctx.fetches] == ["a", "c", "b"]


def test_lso_log_start_and_errors_are_changes() -> None:
    cache = FetchSessionCache()
    sid = open_session(cache, ["a", "b", "c"], hwm=10)
    ctx = cache.new_context(sid, 1, False, [], [], 1)
    _, send = cache.finish(ctx, {"a": state(10, lso=8), "b": state(10, start=3), "c": state(-1, error=3)}, 1)
    assert send == {"a", "b", "c"}
    # the error clears with the same high watermark as before it: c is sent again
    ctx = cache.new_context(sid, 2, False, [], [], 2)
    _, send = cache.finish(ctx, {"a": state(10, lso=8), "b": state(10, start=3), "c": state(10)}, 2)
    assert send == {"c"}
    # an error that persists is sent every time
    for epoch in (3, 4):
        ctx = cache.new_context(sid, epoch, False, [], [], epoch)
        _, send = cache.finish(ctx, {"a": state(10, lso=8), "b": state(10, start=3), "c": state(-1, error=3)}, epoch)
        assert send == {"c"}


def test_updates_adds_and_forgotten_partitions() -> None:
    cache = FetchSessionCache()
    sid = open_session(cache, ["a", "b"])
    ctx = cache.new_context(sid, 1, False, [("a", 7, 200), ("d", 0, 100)], ["b"], 1)
    assert ctx.fetches == [("a", 7, 200), ("d", 0, 100)]
    _, send = cache.finish(ctx, {"a": state(0), "d": state(0)}, 1)
    assert send == {"d"}  # new partition: its high watermark was never sent
    # forgetting everything ends the session
    ctx = cache.new_context(sid, 2, False, [], ["a", "d"], 2)
    assert ctx.kind is ContextKind.SESSIONLESS
    assert cache.get(sid) is None


def test_session_errors() -> None:
    cache = FetchSessionCache()
    sid = open_session(cache, ["a"])
    assert cache.new_context(sid + 1, 1, False, [], [], 1).error_code == FETCH_SESSION_ID_NOT_FOUND
    assert cache.new_context(sid, 2, False, [], [], 1).error_code == INVALID_FETCH_SESSION_EPOCH
    assert cache.new_context(sid, 1, True, [], [], 1).error_code == FETCH_SESSION_TOPIC_ID_ERROR
    # a refused request does not advance the epoch
    assert cache.new_context(sid, 1, False, [], [], 1).kind is ContextKind.INCREMENTAL
    assert cache.new_context(sid, 1, False, [], [], 1).error_code == INVALID_FETCH_SESSION_EPOCH  # replayed epoch
    assert cache.new_context(sid, 2, False, [], [], 1).kind is ContextKind.INCREMENTAL


def test_final_epoch_closes_and_full_fetch_replaces() -> None:
    cache = FetchSessionCache()
    sid = open_session(cache, ["a"])
    ctx = cache.new_context(sid, -1, False, [("a", 0, 1)], [], 1)
    assert ctx.kind is ContextKind.SESSIONLESS
    assert cache.get(sid) is None
    sid = open_session(cache, ["a"])
    ctx = cache.new_context(sid, 0, False, [("a", 0, 1)], [], 1)  # a new full fetch naming the old session
    assert cache.get(sid) is None
    new_sid, _ = cache.finish(ctx, {"a": state(0)}, 1)
    assert new_sid not in (0, sid)


def test_epochs_wrap_to_one() -> None:
    assert next_epoch(0) == 1
    assert next_epoch(41) == 42
    assert next_epoch(2**31 - 1) == 1


def test_cache_is_bounded_and_evicts_as_kafka() -> None:
    cache = FetchSessionCache(max_slots=2, eviction_ms=1000, rng=random.Random(1))
    s1 = open_session(cache, ["a"], now=0)
    s2 = open_session(cache, ["a", "b"], now=0)
    # full and nothing stale or old: no session for a third client (it keeps full fetches)
    ctx = cache.new_context(0, 0, False, [("a", 0, 1), ("b", 0, 1), ("c", 0, 1)], [], 500)
    assert cache.finish(ctx, {}, 500) == (0, None)
    assert len(cache) == 2
    # s2 stays in use; s1 goes idle past the eviction time and is evicted for a new session
    cache.finish(cache.new_context(s2, 1, False, [], [], 1800), {}, 1800)
    ctx = cache.new_context(0, 0, False, [("x", 0, 1)], [], 2000)
    s3, _ = cache.finish(ctx, {}, 2000)
    assert s3 != 0 and cache.get(s1) is None and cache.get(s2) is not None
    assert cache.evictions == 1
    # nothing idle: a bigger new session evicts the smallest session older than eviction_ms
    cache.finish(cache.new_context(s2, 2, False, [], [], 3100), {}, 3100)
    cache.finish(cache.new_context(s3, 1, False, [], [], 3100), {}, 3100)
    ctx = cache.new_context(0, 0, False, [("a", 0, 1), ("b", 0, 1)], [], 3200)
    assert cache.finish(ctx, {}, 3200)[0] != 0
    assert cache.get(s3) is None and cache.get(s2) is not None
    # an equal-sized one does not
    ctx = cache.new_context(0, 0, False, [("a", 0, 1), ("b", 0, 1)], [], 3300)
    assert cache.finish(ctx, {}, 3300) == (0, None)
    assert len(cache) == 2


def test_default_cache_holds_kafkas_thousand_sessions() -> None:
    cache = FetchSessionCache()
    ids = {open_session(cache, ["a"], now=0) for _ in range(1000)}
    assert len(ids) == 1000 == len(cache)
    ctx = cache.new_context(0, 0, False, [("a", 0, 1)], [], 1)
    assert cache.finish(ctx, {}, 1) == (0, None)
    assert len(cache) == 1000


# ------------------------------------------------------------------ model-based property
# A client that applies incremental responses to its view of each partition always ends up
# with the view a full fetch would have given, and never misses records.

part_state = st.builds(
    lambda hwm, lso_gap, start, records, error: PartitionState(records, error, hwm, hwm - lso_gap, min(start, hwm)),
    st.integers(0, 6),
    st.integers(0, 2),
    st.integers(0, 3),
    st.sampled_from([0, 0, 10]),
    st.sampled_from([0, 0, 0, 1, 3]),
)
KEYS = ["p0", "p1", "p2", "p3"]


@settings(deadline=None, max_examples=200)
@given(rounds=st.lists(st.tuples(st.fixed_dictionaries({k: part_state for k in KEYS}), st.sets(st.sampled_from(KEYS))), min_size=1, max_size=12))
def test_incremental_view_equals_full_view(rounds: list[tuple[dict[str, PartitionState], set[str]]]) -> None:
    cache = FetchSessionCache()
    first = rounds[0][0]
    ctx = cache.new_context(0, 0, False, [(k, 0, 1) for k in KEYS], [], 0)
    sid, _ = cache.finish(ctx, first, 0)
    view = {k: (s.error_code, s.high_watermark, s.last_stable_offset, s.log_start_offset) for k, s in first.items()}
    epoch = 1
    for now, (truth, moved) in enumerate(rounds[1:], start=1):
        ctx = cache.new_context(sid, epoch, False, [(k, now, 1) for k in sorted(moved)], [], now)
        epoch = next_epoch(epoch)
        assert sorted(k for k, _, _ in ctx.fetches) == KEYS
        _, send = cache.finish(ctx, truth, now)
        assert send is not None
        for k in send:
            s = truth[k]
            view[k] = (s.error_code, s.high_watermark, s.last_stable_offset, s.log_start_offset)
        for k, s in truth.items():
            if s.records_size or s.error_code:
                assert k in send
            if s.error_code == 0:
                assert view[k] == (0, s.high_watermark, s.last_stable_offset, s.log_start_offset)


def test_generation_tracks_changes_to_the_fetch_list() -> None:
    cache = FetchSessionCache()
    sid = open_session(cache, ["a", "b"], hwm=5)
    session = cache.get(sid)
    assert session is not None
    g = session.generation
    cache.finish(cache.new_context(sid, 1, False, [], [], 1), {"a": state(5), "b": state(5)}, 1)
    assert session.generation == g  # nothing listed, nothing moved
    cache.finish(cache.new_context(sid, 2, False, [("a", 3, 100)], [], 2), {"a": state(5), "b": state(5)}, 2)
    assert session.generation > g  # a fetch offset changed
    g = session.generation
    cache.finish(cache.new_context(sid, 3, False, [], [], 3), {"a": state(6, records=10), "b": state(5)}, 3)
    assert session.generation > g  # a moved to the back
    g = session.generation
    cache.finish(cache.new_context(sid, 4, False, [], ["zz"], 4), {"a": state(6), "b": state(5)}, 4)
    assert session.generation == g  # forgetting an unknown partition changes nothing
    cache.new_context(sid, 5, False, [], ["a"], 5)
    assert session.generation > g
