"""A Hypothesis state machine: producers init, add partitions and offsets, end transactions,
markers land late (or never), the clock jumps past timeouts and expiry, and the coordinator
is reloaded from its own __transaction_state records, against the coordinator's invariants."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from riverbed.coordinator.txn import TransactionCoordinator
from riverbed.coordinator.txn_log import decode, persisted, txn_key, txn_value
from riverbed.coordinator.txn_types import (
    COMPLETE,
    PREPARING,
    TxnConfig,
    TxnEvent,
    TxnLogWrite,
    TxnSnapshot,
    TxnState,
    WriteMarkers,
)
from riverbed.protocol.errors import ErrorCode as E

S = TxnState
R = TypeVar("R")
CONFIG = TxnConfig(
    transaction_max_timeout_ms=5_000,
    transactional_id_expiration_ms=40_000,
    abort_timed_out_interval_ms=500,
    remove_expired_interval_ms=7_000,
)
IDS = st.sampled_from(["t0", "t1"])
STALE = st.sampled_from([False, False, False, True])  # now and then a fenced producer calls
RARELY = st.sampled_from([True, False, False, False])
PARTS = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2)), max_size=3)
ALLOWED = {
    "init": {E.NONE, E.CONCURRENT_TRANSACTIONS, E.PRODUCER_FENCED},
    "add": {
        E.NONE,
        E.CONCURRENT_TRANSACTIONS,
        E.PRODUCER_FENCED,
        E.INVALID_PRODUCER_ID_MAPPING,
    },
    "end": {
        E.NONE,
        E.CONCURRENT_TRANSACTIONS,
        E.PRODUCER_FENCED,
        E.INVALID_PRODUCER_ID_MAPPING,
        E.INVALID_TXN_STATE,
    },
}


class TxnMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000
        self.pids = itertools.count(1)
        self.log: list[tuple[str, bytes | None]] = []  # the __transaction_state records
        self.pending: list[WriteMarkers] = []  # markers not yet written
        self.clients: dict[str, tuple[int, int]] = {}  # id -> (pid, epoch) last granted
        self.seen: dict[str, tuple[int, int]] = {}  # id -> (pid, highest epoch) written
        self.coord = self._new()

    def _new(self) -> TransactionCoordinator:
        return TransactionCoordinator(
            lambda: self.now, CONFIG, lambda: next(self.pids), self._on_event
        )

    def _on_event(self, event: TxnEvent) -> None:
        self.events.append(event)

    events: list[TxnEvent]

    def _call(self, fn: Callable[..., R], *args: object) -> R:
        self.events = []
        result = fn(*args)
        self._check_events(self.events)
        return result

    def _check_events(self, events: list[TxnEvent]) -> None:
        for i, event in enumerate(events):
            if isinstance(event, WriteMarkers):
                self.pending.append(event)
                continue
            snap = event.snapshot
            raw = None if snap is None else txn_value(snap)
            self.log.append((event.transactional_id, raw))
            if snap is None:
                self.seen.pop(event.transactional_id, None)
                self.clients.pop(event.transactional_id, None)
                continue
            # epochs never go down for a producer id of an id
            prev = self.seen.get(snap.transactional_id)
            if prev is not None and prev[0] == snap.producer_id:
                assert snap.producer_epoch >= prev[1], (prev, snap)
            self.seen[snap.transactional_id] = (snap.producer_id, snap.producer_epoch)
            # every Prepare* is followed at once by its markers (or, with no partition, by
            # its completion)
            if snap.state in PREPARING:
                nxt = events[i + 1]
                if snap.partitions:
                    assert nxt == WriteMarkers(
                        snap.transactional_id,
                        snap.producer_id,
                        snap.producer_epoch,
                        snap.state is S.PREPARE_COMMIT,
                        tuple(sorted(snap.partitions)),
                    )
                else:
                    assert isinstance(nxt, TxnLogWrite) and nxt.snapshot is not None
                    assert nxt.snapshot.state in COMPLETE
            assert snap.state not in (S.DEAD, S.PREPARE_EPOCH_FENCE)

    # -- rules ------------------------------------------------------------------------------

    @rule(
        tid=IDS, timeout=st.sampled_from([1_000, 3_000, 5_000]), kip360=st.booleans(), again=RARELY
    )
    def init(self, tid: str, timeout: int, kip360: bool, again: bool) -> None:
        held = self.clients.get(tid)
        if held is not None and not again:
            return  # a producer re-initialises now and then, not at every other step
        pid, epoch = held if kip360 and held is not None else (-1, -1)
        r = self._call(self.coord.init_producer_id, tid, timeout, pid, epoch)
        assert r.error_code in ALLOWED["init"], r
        if r.error_code == E.NONE:
            self.clients[tid] = (r.producer_id, r.producer_epoch)
            snap = self.coord.snapshot(tid)
            assert snap is not None and snap.state is S.EMPTY
            assert (snap.producer_id, snap.producer_epoch) == (r.producer_id, r.producer_epoch)

    @rule(tid=IDS, parts=PARTS, stale=STALE)
    def add(self, tid: str, parts: list[tuple[str, int]], stale: bool) -> None:
        pid, epoch = self.clients.get(tid, (99, 0))
        code = self._call(self.coord.add_partitions, tid, pid, epoch - stale, parts)
        assert code in ALLOWED["add"], code
        if code == E.NONE and parts:
            snap = self.coord.snapshot(tid)
            assert snap is not None and snap.state is S.ONGOING and set(parts) <= snap.partitions

    @rule(tid=IDS, group=st.integers(0, 2))
    def add_offsets(self, tid: str, group: int) -> None:
        pid, epoch = self.clients.get(tid, (99, 0))
        code = self._call(self.coord.add_offsets, tid, pid, epoch, ("__consumer_offsets", group))
        assert code in ALLOWED["add"], code

    @rule(tid=IDS, commit=st.booleans(), stale=STALE)
    def end(self, tid: str, commit: bool, stale: bool) -> None:
        pid, epoch = self.clients.get(tid, (99, 0))
        before = self.coord.snapshot(tid)
        code = self._call(self.coord.end_txn, tid, pid, epoch - stale, commit)
        assert code in ALLOWED["end"], code
        if code == E.NONE and before is not None and before.state is S.ONGOING:
            after = self.coord.snapshot(tid)
            assert after is not None
            assert after.state in (
                {S.PREPARE_COMMIT, S.COMPLETE_COMMIT}
                if commit
                else {S.PREPARE_ABORT, S.COMPLETE_ABORT}
            )

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def markers(self, data: st.DataObject) -> None:
        m = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        self._call(self.coord.markers_written, m.transactional_id, m.producer_id, m.producer_epoch)

    @rule(ms=st.sampled_from([1, 499, 500, 2_000, 6_000, 45_000]))
    def advance(self, ms: int) -> None:
        self.now += ms
        deadline = self.coord.next_deadline()
        self._call(self.coord.tick)
        if deadline is not None and deadline <= self.now:
            nxt = self.coord.next_deadline()
            assert nxt is None or nxt > self.now

    @rule(go=RARELY)
    def reload(self, go: bool) -> None:
        """Crash and restart: replay the records; unwritten markers are asked for again."""
        if not go:
            return
        before = {tid: self.coord.snapshot(tid) for tid in self.coord.transactional_ids()}
        fresh = self._new()
        self.events = []
        for key_id, raw in self.log:
            tid, snap = decode(txn_key(key_id), raw)
            fresh.load(tid, snap)
        assert self.events == []  # loading emits nothing
        after = {tid: fresh.snapshot(tid) for tid in fresh.transactional_ids()}
        assert after == {tid: persisted(s) for tid, s in before.items() if s is not None}
        self.coord = fresh
        self.pending = []
        self._call(fresh.finish_load)
        preparing = {tid for tid, s in after.items() if s is not None and s.state in PREPARING}
        assert {m.transactional_id for m in self.pending} == preparing

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def snapshots_are_consistent(self) -> None:
        for tid in self.coord.transactional_ids():
            snap: TxnSnapshot | None = self.coord.snapshot(tid)
            assert snap is not None
            if snap.state is S.ONGOING:
                assert snap.start_ms >= 0
            if snap.state in COMPLETE or snap.state is S.EMPTY:
                assert snap.partitions == frozenset()
            if snap.state is S.ONGOING and snap.partitions:
                assert self.coord.next_deadline() is not None
            assert 0 <= snap.producer_epoch <= 32767

    @invariant()
    def preparing_ids_have_markers_outstanding(self) -> None:
        outstanding = {(m.transactional_id, m.producer_id, m.producer_epoch) for m in self.pending}
        for tid in self.coord.transactional_ids():
            snap = self.coord.snapshot(tid)
            if snap is not None and snap.state in PREPARING:
                assert (tid, snap.producer_id, snap.producer_epoch) in outstanding


TxnMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_txn_machine = TxnMachine.TestCase
