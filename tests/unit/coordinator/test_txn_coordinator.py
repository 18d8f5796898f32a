"""The transaction coordinator's rules (InitProducerId, AddPartitions/AddOffsets, EndTxn,
markers, timeouts, expiry, describe/list, reload), one behaviour per test, with a fake clock."""

from __future__ import annotations

import itertools

import pytest

from riverbed.coordinator.txn import TransactionCoordinator
from riverbed.coordinator.txn_log import decode, txn_key, txn_value
from riverbed.coordinator.txn_types import (
    InitResult,
    TxnConfig,
    TxnEvent,
    TxnLogWrite,
    TxnState,
    WriteMarkers,
)
from riverbed.protocol.errors import ErrorCode as E

START = 1_000_000
TIMEOUT = 60_000
CONFIG = TxnConfig()
S = TxnState


class Harness:
    def __init__(self, config: TxnConfig = CONFIG, first_pid: int = 1000) -> None:
        self.now = START
        self.events: list[TxnEvent] = []
        self.pids = itertools.count(first_pid)
        self.coord = TransactionCoordinator(
            lambda: self.now, config, lambda: next(self.pids), self.events.append
        )

    def take(self) -> list[TxnEvent]:
        out, self.events[:] = list(self.events), []
        return out

    def writes(self) -> list[TxnLogWrite]:
        return [e for e in self.take() if isinstance(e, TxnLogWrite)]

    def state(self, tid: str = "t") -> TxnState:
        snap = self.coord.snapshot(tid)
        assert snap is not None
        return snap.state

    def init(
        self, tid: str = "t", timeout: int = TIMEOUT, pid: int = -1, epoch: int = -1
    ) -> InitResult:
        return self.coord.init_producer_id(tid, timeout, pid, epoch)

    def begin(self, tid: str = "t", *parts: tuple[str, int]) -> InitResult:
        """Init and add partitions (default one): an Ongoing transaction."""
        r = self.init(tid)
        assert r.error_code == E.NONE
        assert (
            self.coord.add_partitions(
                tid, r.producer_id, r.producer_epoch, list(parts) or [("a", 0)]
            )
            == E.NONE
        )
        return r

    def finish_markers(self) -> None:
        """Carry out every WriteMarkers event delivered so far."""
        for e in self.take():
            if isinstance(e, WriteMarkers):
                self.coord.markers_written(e.transactional_id, e.producer_id, e.producer_epoch)


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- InitProducerId -------------------------------------------------------------------------


def test_states_have_kafkas_ids_and_names() -> None:
    assert [(s.value, s.display) for s in TxnState] == [
        (0, "Empty"),
        (1, "Ongoing"),
        (2, "PrepareCommit"),
        (3, "PrepareAbort"),
        (4, "CompleteCommit"),
        (5, "CompleteAbort"),
        (6, "Dead"),
        (7, "PrepareEpochFence"),
    ]
    assert TxnState.from_display("Ongoing") is S.ONGOING
    assert TxnState.from_display("ongoing") is None


def test_init_new_id_allocates_pid_at_epoch_0(h: Harness) -> None:
    assert h.init() == InitResult(E.NONE, 1000, 0)
    (w,) = h.writes()
    assert w.snapshot is not None
    assert (w.snapshot.state, w.snapshot.producer_epoch, w.snapshot.timeout_ms) == (
        S.EMPTY,
        0,
        TIMEOUT,
    )
    assert w.snapshot.start_ms == -1 and w.snapshot.last_update_ms == START


@pytest.mark.parametrize(
    ("tid", "timeout", "pid", "epoch", "error"),
    [
        ("", TIMEOUT, -1, -1, E.INVALID_REQUEST),
        ("t", TIMEOUT, 5, -1, E.INVALID_REQUEST),  # KIP-360 needs both or neither
        ("t", TIMEOUT, -1, 3, E.INVALID_REQUEST),
        ("t", 0, -1, -1, E.INVALID_TRANSACTION_TIMEOUT),
        ("t", -5, -1, -1, E.INVALID_TRANSACTION_TIMEOUT),
        ("t", CONFIG.transaction_max_timeout_ms + 1, -1, -1, E.INVALID_TRANSACTION_TIMEOUT),
    ],
)
def test_init_rejects(h: Harness, tid: str, timeout: int, pid: int, epoch: int, error: int) -> None:
    assert h.init(tid, timeout, pid, epoch) == InitResult(error)
    assert h.take() == [] and h.coord.snapshot("t") is None


def test_init_max_timeout_is_allowed(h: Harness) -> None:
    assert h.init(timeout=CONFIG.transaction_max_timeout_ms).error_code == E.NONE


def test_init_again_bumps_epoch_and_updates_timeout(h: Harness) -> None:
    h.init()
    h.now += 5
    assert h.init(timeout=1234) == InitResult(E.NONE, 1000, 1)
    (w,) = h.writes()[1:]
    assert w.snapshot is not None
    assert (w.snapshot.timeout_ms, w.snapshot.last_update_ms, w.snapshot.last_producer_epoch) == (
        1234,
        START + 5,
        -1,
    )


def test_init_after_complete_bumps_epoch(h: Harness) -> None:
    r = h.begin()
    h.coord.end_txn("t", r.producer_id, 0, True)
    h.finish_markers()
    assert h.state() is S.COMPLETE_COMMIT
    assert h.init() == InitResult(E.NONE, r.producer_id, 1)
    assert h.state() is S.EMPTY


def test_init_during_prepare_is_concurrent(h: Harness) -> None:
    r = h.begin()
    h.coord.end_txn("t", r.producer_id, r.producer_epoch, True)
    h.take()
    assert h.init() == InitResult(E.CONCURRENT_TRANSACTIONS)
    assert h.take() == []


def test_init_on_ongoing_fences_and_aborts_with_bumped_epoch(h: Harness) -> None:
    r = h.begin("t", ("a", 0), ("b", 1))
    h.take()
    h.now += 10
    assert h.init() == InitResult(E.CONCURRENT_TRANSACTIONS)
    w, m = h.take()
    assert isinstance(w, TxnLogWrite) and w.snapshot is not None
    # PrepareEpochFence is never written: the fence is persisted as PrepareAbort.
    assert (w.snapshot.state, w.snapshot.producer_epoch) == (S.PREPARE_ABORT, 1)
    assert m == WriteMarkers("t", r.producer_id, 1, False, (("a", 0), ("b", 1)))
    # the old producer is fenced everywhere
    assert h.coord.add_partitions("t", r.producer_id, 0, [("c", 0)]) == E.PRODUCER_FENCED
    assert h.coord.end_txn("t", r.producer_id, 0, True) == E.PRODUCER_FENCED
    # retries are concurrent until the markers are written, then get the next epoch
    assert h.init() == InitResult(E.CONCURRENT_TRANSACTIONS)
    h.coord.markers_written("t", r.producer_id, 1)
    assert h.state() is S.COMPLETE_ABORT
    assert h.init() == InitResult(E.NONE, r.producer_id, 2)


def test_kip360_expected_epoch_bumps_and_retry_returns_same(h: Harness) -> None:
    r = h.init()
    assert h.init(pid=r.producer_id, epoch=0) == InitResult(E.NONE, r.producer_id, 1)
    snap = h.coord.snapshot("t")
    assert snap is not None and snap.last_producer_epoch == 0
    # the answer was lost: the producer retries with the epoch it had
    assert h.init(pid=r.producer_id, epoch=0) == InitResult(E.NONE, r.producer_id, 1)
    # a producer holding the current epoch gets the next one
    assert h.init(pid=r.producer_id, epoch=1) == InitResult(E.NONE, r.producer_id, 2)


def test_kip360_stale_epoch_or_other_pid_is_fenced(h: Harness) -> None:
    r = h.init()
    h.init()
    h.init()  # epoch 2, last epoch -1
    assert h.init(pid=r.producer_id, epoch=0) == InitResult(E.PRODUCER_FENCED)
    assert h.init(pid=r.producer_id + 50, epoch=2) == InitResult(E.PRODUCER_FENCED)


def test_kip360_unknown_id_gets_new_pid(h: Harness) -> None:
    assert h.init(pid=77, epoch=4) == InitResult(E.NONE, 1000, 0)


def test_epoch_exhaustion_rotates_producer_id(h: Harness) -> None:
    h.init()
    snap = h.coord.snapshot("t")
    assert snap is not None
    from dataclasses import replace

    h.coord.load("t", replace(snap, producer_epoch=32765))
    assert h.init() == InitResult(E.NONE, 1000, 32766)  # the last epoch a client may use
    h.take()
    assert h.init(pid=1000, epoch=32766) == InitResult(E.NONE, 1001, 0)
    (w,) = h.writes()
    assert w.snapshot is not None
    assert (w.snapshot.previous_producer_id, w.snapshot.last_producer_epoch) == (1000, 32766)
    # a retry with the old producer id and exhausted epoch gets the same answer
    assert h.init(pid=1000, epoch=32766) == InitResult(E.NONE, 1001, 0)
    # without an expected epoch a rotation records no last epoch
    h2 = Harness()
    h2.init()
    s2 = h2.coord.snapshot("t")
    assert s2 is not None
    h2.coord.load("t", replace(s2, producer_epoch=32766))
    assert h2.init() == InitResult(E.NONE, 1001, 0)
    s3 = h2.coord.snapshot("t")
    assert s3 is not None and s3.last_producer_epoch == -1


def test_fence_at_last_client_epoch_then_rotation(h: Harness) -> None:
    from dataclasses import replace

    r = h.begin()
    snap = h.coord.snapshot("t")
    assert snap is not None
    h.coord.load("t", replace(snap, producer_epoch=32766))
    assert h.init() == InitResult(E.CONCURRENT_TRANSACTIONS)
    h.finish_markers()
    snap = h.coord.snapshot("t")
    assert snap is not None and (snap.state, snap.producer_epoch) == (S.COMPLETE_ABORT, 32767)
    assert h.init() == InitResult(E.NONE, r.producer_id + 1, 0)


# -- AddPartitionsToTxn / AddOffsetsToTxn ---------------------------------------------------


def test_add_partitions_starts_transaction(h: Harness) -> None:
    r = h.init()
    h.take()
    h.now += 7
    assert h.coord.add_partitions("t", r.producer_id, 0, [("a", 0), ("a", 1)]) == E.NONE
    (w,) = h.writes()
    assert w.snapshot is not None
    assert w.snapshot.state is S.ONGOING and w.snapshot.start_ms == START + 7
    assert w.snapshot.partitions == {("a", 0), ("a", 1)}
    h.now += 7
    assert h.coord.add_partitions("t", r.producer_id, 0, [("b", 0)]) == E.NONE
    (w,) = h.writes()
    assert w.snapshot is not None
    assert w.snapshot.start_ms == START + 7 and len(w.snapshot.partitions) == 3
    assert w.snapshot.last_update_ms == START + 14


def test_add_nothing_new_is_a_no_op(h: Harness) -> None:
    r = h.begin("t", ("a", 0), ("a", 1))
    h.take()
    assert h.coord.add_partitions("t", r.producer_id, 0, [("a", 1)]) == E.NONE
    assert h.coord.add_partitions("t", r.producer_id, 0, []) == E.NONE
    assert h.take() == []


@pytest.mark.parametrize(
    ("tid", "pid_delta", "epoch", "error"),
    [
        ("nope", 0, 0, E.INVALID_PRODUCER_ID_MAPPING),
        ("t", 1, 0, E.INVALID_PRODUCER_ID_MAPPING),
        ("t", 0, 1, E.PRODUCER_FENCED),
        ("t", 0, -1, E.PRODUCER_FENCED),
        ("", 0, 0, E.INVALID_REQUEST),
    ],
)
def test_add_checks_producer(h: Harness, tid: str, pid_delta: int, epoch: int, error: int) -> None:
    r = h.init()
    h.take()
    assert h.coord.add_partitions(tid, r.producer_id + pid_delta, epoch, [("a", 0)]) == error
    assert (
        h.coord.add_offsets(tid, r.producer_id + pid_delta, epoch, ("__consumer_offsets", 3))
        == error
    )
    assert h.take() == []


def test_add_during_prepare_is_concurrent(h: Harness) -> None:
    r = h.begin()
    h.coord.end_txn("t", r.producer_id, 0, False)
    h.take()
    assert h.coord.add_partitions("t", r.producer_id, 0, [("b", 0)]) == E.CONCURRENT_TRANSACTIONS
    assert (
        h.coord.add_offsets("t", r.producer_id, 0, ("__consumer_offsets", 1))
        == E.CONCURRENT_TRANSACTIONS
    )


def test_add_after_complete_starts_a_new_transaction(h: Harness) -> None:
    r = h.begin()
    h.coord.end_txn("t", r.producer_id, 0, True)
    h.finish_markers()
    h.now += 100
    assert h.coord.add_partitions("t", r.producer_id, 0, [("a", 0)]) == E.NONE
    snap = h.coord.snapshot("t")
    assert snap is not None and snap.start_ms == START + 100 and snap.partitions == {("a", 0)}


def test_add_offsets_adds_the_group_partition_and_markers_include_it(h: Harness) -> None:
    r = h.begin()
    assert h.coord.add_offsets("t", r.producer_id, 0, ("__consumer_offsets", 7)) == E.NONE
    h.take()
    assert h.coord.end_txn("t", r.producer_id, 0, True) == E.NONE
    _, m = h.take()
    assert isinstance(m, WriteMarkers) and ("__consumer_offsets", 7) in m.partitions


# -- EndTxn ---------------------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_end_txn_prepares_writes_markers_then_completes(h: Harness, commit: bool) -> None:
    r = h.begin("t", ("a", 0))
    h.take()
    h.now += 3
    assert h.coord.end_txn("t", r.producer_id, 0, commit) == E.NONE
    w, m = h.take()
    assert isinstance(w, TxnLogWrite) and w.snapshot is not None
    assert w.snapshot.state is (S.PREPARE_COMMIT if commit else S.PREPARE_ABORT)
    assert m == WriteMarkers("t", r.producer_id, 0, commit, (("a", 0),))
    # same result again while preparing: concurrent; the other result: invalid
    assert h.coord.end_txn("t", r.producer_id, 0, commit) == E.CONCURRENT_TRANSACTIONS
    assert h.coord.end_txn("t", r.producer_id, 0, not commit) == E.INVALID_TXN_STATE
    h.now += 3
    h.coord.markers_written("t", r.producer_id, 0)
    (w,) = h.writes()
    assert w.snapshot is not None
    assert w.snapshot.state is (S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT)
    assert w.snapshot.partitions == frozenset() and w.snapshot.last_update_ms == START + 6
    assert w.snapshot.start_ms == START  # kept: DescribeTransactions shows it
    # a retry of the completed result succeeds, the other result is invalid
    assert h.coord.end_txn("t", r.producer_id, 0, commit) == E.NONE
    assert h.coord.end_txn("t", r.producer_id, 0, not commit) == E.INVALID_TXN_STATE
    assert h.take() == []


def test_end_txn_in_empty_is_invalid(h: Harness) -> None:
    r = h.init()
    assert h.coord.end_txn("t", r.producer_id, 0, True) == E.INVALID_TXN_STATE
    assert h.coord.end_txn("t", r.producer_id, 0, False) == E.INVALID_TXN_STATE


def test_end_txn_checks_producer(h: Harness) -> None:
    r = h.begin()
    assert h.coord.end_txn("x", r.producer_id, 0, True) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.coord.end_txn("t", r.producer_id + 1, 0, True) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.coord.end_txn("t", r.producer_id, 1, True) == E.PRODUCER_FENCED
    assert h.coord.end_txn("", r.producer_id, 0, True) == E.INVALID_REQUEST


def test_ongoing_without_partitions_ends_without_markers(h: Harness) -> None:
    from dataclasses import replace

    h.init()
    snap = h.coord.snapshot("t")
    assert snap is not None
    h.coord.load("t", replace(snap, state=S.ONGOING, start_ms=START))
    h.take()
    assert h.coord.end_txn("t", snap.producer_id, 0, True) == E.NONE
    events = h.take()
    assert [e.snapshot.state for e in events if isinstance(e, TxnLogWrite) and e.snapshot] == [
        S.PREPARE_COMMIT,
        S.COMPLETE_COMMIT,
    ]
    assert not any(isinstance(e, WriteMarkers) for e in events)


def test_markers_written_ignores_stale_calls(h: Harness) -> None:
    r = h.begin()
    h.coord.markers_written("t", r.producer_id, 0)  # not preparing
    h.coord.markers_written("nope", 1, 0)
    h.coord.end_txn("t", r.producer_id, 0, True)
    h.take()
    h.coord.markers_written("t", r.producer_id, 1)  # other epoch
    h.coord.markers_written("t", r.producer_id + 1, 0)  # other producer
    assert h.state() is S.PREPARE_COMMIT and h.take() == []
    h.coord.markers_written("t", r.producer_id, 0)
    h.coord.markers_written("t", r.producer_id, 0)  # repeated
    assert h.state() is S.COMPLETE_COMMIT and len(h.take()) == 1


# -- timeouts and expiry --------------------------------------------------------------------


def test_timed_out_transaction_is_aborted_with_bumped_epoch_at_the_sweep() -> None:
    h = Harness(TxnConfig(abort_timed_out_interval_ms=1000))
    r = h.begin("t", ("a", 0))
    h.take()
    assert h.coord.next_deadline() == START + 1000
    h.now = START + TIMEOUT  # start + timeout is not yet past (Kafka: strictly after)
    h.coord.tick()
    assert h.state() is S.ONGOING and h.take() == []
    assert h.coord.next_deadline() == START + TIMEOUT + 1000
    h.now = START + TIMEOUT + 1000
    h.coord.tick()
    w, m = h.take()
    assert isinstance(w, TxnLogWrite) and w.snapshot is not None
    assert (w.snapshot.state, w.snapshot.producer_epoch) == (S.PREPARE_ABORT, 1)
    assert m == WriteMarkers("t", r.producer_id, 1, False, (("a", 0),))
    # what the timed-out producer hears: PRODUCER_FENCED (Kafka does not answer the old
    # epoch with anything else; KIP-588's TRANSACTION_TIMED_OUT was never implemented)
    assert h.coord.end_txn("t", r.producer_id, 0, True) == E.PRODUCER_FENCED
    assert h.coord.end_txn("t", r.producer_id, 0, False) == E.PRODUCER_FENCED
    assert h.coord.add_partitions("t", r.producer_id, 0, [("a", 0)]) == E.PRODUCER_FENCED
    h.coord.markers_written("t", r.producer_id, 1)
    assert h.state() is S.COMPLETE_ABORT
    assert h.coord.end_txn("t", r.producer_id, 0, False) == E.PRODUCER_FENCED
    assert h.init(pid=r.producer_id, epoch=0) == InitResult(E.PRODUCER_FENCED)
    assert h.init() == InitResult(E.NONE, r.producer_id, 2)


def test_no_deadline_when_idle(h: Harness) -> None:
    assert h.coord.next_deadline() is None
    h.coord.tick()
    assert h.take() == []


def test_abort_sweep_stops_when_nothing_is_ongoing() -> None:
    config = TxnConfig(abort_timed_out_interval_ms=1000, remove_expired_interval_ms=10**9)
    h = Harness(config)
    r = h.begin()
    h.coord.end_txn("t", r.producer_id, 0, True)
    h.finish_markers()
    h.now += 1000
    h.coord.tick()
    assert h.coord.next_deadline() == START + 10**9  # only the expiry sweep is left


def test_idle_ids_expire_with_a_tombstone() -> None:
    config = TxnConfig(transactional_id_expiration_ms=5000, remove_expired_interval_ms=1000)
    h = Harness(config)
    h.init("idle")
    r = h.begin("busy")
    h.take()
    assert h.coord.next_deadline() == START + 1000
    h.now = START + 5000
    h.coord.tick()
    assert h.take() == [TxnLogWrite("idle", None)]
    assert h.coord.snapshot("idle") is None
    assert h.coord.snapshot("busy") is not None  # Ongoing never expires
    # a forgotten id starts over with a new producer id
    assert h.init("idle") == InitResult(E.NONE, r.producer_id + 1, 0)


def test_expiry_counts_from_last_update() -> None:
    config = TxnConfig(transactional_id_expiration_ms=5000, remove_expired_interval_ms=1000)
    h = Harness(config)
    h.init()
    h.now = START + 4000
    h.init()
    h.now = START + 6000
    h.coord.tick()
    assert h.coord.snapshot("t") is not None
    h.now = START + 9000
    h.coord.tick()
    assert h.coord.snapshot("t") is None


# -- describe / list ------------------------------------------------------------------------


def test_describe(h: Harness) -> None:
    r = h.begin("t", ("b", 2), ("a", 1), ("a", 0))
    (d, unknown, invalid) = h.coord.describe(["t", "x", ""])
    assert (d.error_code, d.state, d.producer_id, d.producer_epoch) == (
        E.NONE,
        "Ongoing",
        r.producer_id,
        0,
    )
    assert (d.timeout_ms, d.start_ms) == (TIMEOUT, START)
    assert d.topics == (("a", (0, 1)), ("b", (2,)))
    assert unknown.error_code == E.TRANSACTIONAL_ID_NOT_FOUND
    assert invalid.error_code == E.INVALID_REQUEST
    h.init("e")
    (e,) = h.coord.describe(["e"])
    assert (e.state, e.start_ms, e.topics) == ("Empty", -1, ())


def test_list_filters(h: Harness) -> None:
    a = h.begin("a")
    b = h.init("b")
    h.now += 5000
    unknown, entries = h.coord.list()
    assert unknown == [] and [(e.transactional_id, e.state) for e in entries] == [
        ("a", "Ongoing"),
        ("b", "Empty"),
    ]
    unknown, entries = h.coord.list(["Ongoing", "Bogus"])
    assert unknown == ["Bogus"] and [e.transactional_id for e in entries] == ["a"]
    _, entries = h.coord.list([], [b.producer_id])
    assert [e.transactional_id for e in entries] == ["b"]
    _, entries = h.coord.list(["Ongoing"], [a.producer_id], 4999)
    assert [e.transactional_id for e in entries] == ["a"]
    _, entries = h.coord.list(["Ongoing"], [], 5000)
    assert entries == []


# -- reload ---------------------------------------------------------------------------------


def _replay(events: list[TxnEvent], config: TxnConfig = CONFIG) -> Harness:
    h = Harness(config, first_pid=5000)
    for e in events:
        if isinstance(e, TxnLogWrite):
            tid, snap = decode(
                txn_key(e.transactional_id), None if e.snapshot is None else txn_value(e.snapshot)
            )
            h.coord.load(tid, snap)
    return h


def test_reload_resumes_prepared_transactions() -> None:
    h = Harness()
    r = h.begin("p", ("a", 0), ("b", 0))
    h.coord.end_txn("p", r.producer_id, 0, True)
    h.begin("o")
    log = h.take()
    h2 = _replay(log)
    assert h2.take() == []  # load emits nothing
    h2.now = h.now
    h2.coord.finish_load()
    (m,) = h2.take()
    assert m == WriteMarkers("p", r.producer_id, 0, True, (("a", 0), ("b", 0)))
    assert h2.coord.next_deadline() is not None  # the Ongoing one is watched
    h2.coord.markers_written("p", r.producer_id, 0)
    assert h2.state("p") is S.COMPLETE_COMMIT


def test_reload_of_tombstone_forgets() -> None:
    h = Harness(TxnConfig(transactional_id_expiration_ms=10, remove_expired_interval_ms=10))
    h.init()
    h.now += 10
    h.coord.tick()
    h2 = _replay(h.take())
    assert h2.coord.snapshot("t") is None


def test_events_are_delivered_after_the_call_and_reentrancy_is_queued() -> None:
    seen: list[TxnEvent] = []
    holder: dict[str, TransactionCoordinator] = {}

    def sink(event: TxnEvent) -> None:
        seen.append(event)
        if isinstance(event, WriteMarkers):  # call back from inside the sink
            holder["c"].markers_written(
                event.transactional_id, event.producer_id, event.producer_epoch
            )
            assert seen[-1] is event  # the nested call's events wait for this delivery

    coord = TransactionCoordinator(lambda: START, CONFIG, iter(range(1, 10)).__next__, sink)
    holder["c"] = coord
    r = coord.init_producer_id("t", TIMEOUT)
    coord.add_partitions("t", r.producer_id, 0, [("a", 0)])
    seen.clear()
    assert coord.end_txn("t", r.producer_id, 0, True) == E.NONE
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["TxnLogWrite", "WriteMarkers", "TxnLogWrite"]
    last = seen[-1]
    assert isinstance(last, TxnLogWrite) and last.snapshot is not None
    assert last.snapshot.state is S.COMPLETE_COMMIT


def test_failing_sink_does_not_strand_events() -> None:
    seen: list[TxnEvent] = []

    def sink(event: TxnEvent) -> None:
        seen.append(event)
        if len(seen) == 3:
            raise RuntimeError("boom")

    coord = TransactionCoordinator(lambda: START, CONFIG, iter(range(1, 10)).__next__, sink)
    r = coord.init_producer_id("t", TIMEOUT)
    coord.add_partitions("t", r.producer_id, 0, [("a", 0)])
    with pytest.raises(RuntimeError):
        coord.init_producer_id("t", TIMEOUT)  # the fence: PrepareAbort write, then markers
    assert len(seen) == 4 and isinstance(seen[-1], WriteMarkers)
