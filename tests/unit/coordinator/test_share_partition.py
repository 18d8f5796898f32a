"""The share-partition state machine (KIP-932): acquisition, acknowledgement, locks, delivery
counts, archiving and dead letters; a Hypothesis state machine checks the invariants against
a simple model of every record's fate."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from riverbed.coordinator.share_partition import (
    REASON_DELIVERY_LIMIT,
    REASON_REJECTED,
    AckType,
    RecordState,
    SharePartition,
    StateBatch,
)
from riverbed.protocol.errors import ErrorCode


def test_acquire_ack_and_start_offset_moves() -> None:
    sp = SharePartition(start_offset=0, delivery_limit=3, lock_ms=1000)
    got = sp.acquire("a", 0, 9, 4, now=0)
    assert got == [StateBatch(0, 3, RecordState.ACQUIRED, 1)]
    got = sp.acquire("b", 0, 9, 100, now=0)
    assert got == [StateBatch(4, 9, RecordState.ACQUIRED, 1)]
    assert sp.acknowledge("a", 0, 3, [AckType.ACCEPT], now=1) == ErrorCode.NONE
    assert sp.start_offset == 4
    # b may not acknowledge a's records, nor any twice
    assert sp.acknowledge("a", 4, 4, [AckType.ACCEPT], now=1) == ErrorCode.INVALID_RECORD_STATE
    assert sp.acknowledge("b", 3, 4, [AckType.ACCEPT], now=1) == ErrorCode.INVALID_RECORD_STATE
    assert sp.acquired_by("b") == list(range(4, 10))  # nothing applied of a refused batch


def test_lock_expiry_redelivers_with_count_then_archives_with_dead_letter() -> None:
    sp = SharePartition(start_offset=10, delivery_limit=2, lock_ms=100)
    assert sp.acquire("a", 10, 10, 1, now=0) == [StateBatch(10, 10, RecordState.ACQUIRED, 1)]
    assert sp.next_deadline() == 100
    assert sp.expire(99) == 0
    assert sp.expire(100) == 1
    assert sp.acquire("b", 10, 10, 1, now=200) == [StateBatch(10, 10, RecordState.ACQUIRED, 2)]
    assert sp.release_member("b") == 1  # count 2 == limit: archived, not redelivered
    assert sp.start_offset == 11
    assert [(d.offset, d.delivery_count, d.reason) for d in sp.drain_dead()] == [
        (10, 2, REASON_DELIVERY_LIMIT)
    ]
    assert sp.drain_dead() == []


def test_per_offset_types_reject_release_gap() -> None:
    sp = SharePartition(start_offset=0, delivery_limit=5)
    sp.acquire("a", 0, 3, 10, now=0)
    code = sp.acknowledge(
        "a", 0, 3, [AckType.ACCEPT, AckType.REJECT, AckType.RELEASE, AckType.GAP], now=0
    )
    assert code == ErrorCode.NONE
    assert [(d.offset, d.reason) for d in sp.drain_dead()] == [(1, REASON_REJECTED)]
    assert sp.start_offset == 2
    assert sp.first_wanted() == 2
    assert sp.acquire("b", 0, 3, 10, now=0) == [StateBatch(2, 2, RecordState.ACQUIRED, 2)]


def test_bad_acknowledgements() -> None:
    sp = SharePartition(start_offset=0)
    sp.acquire("a", 0, 1, 10, now=0)
    assert sp.acknowledge("a", 0, 1, [1, 1, 1], now=0) == ErrorCode.INVALID_REQUEST  # wrong count
    assert sp.acknowledge("a", 1, 0, [1], now=0) == ErrorCode.INVALID_REQUEST
    assert sp.acknowledge("a", 0, 0, [9], now=0) == ErrorCode.INVALID_REQUEST
    assert (
        sp.acknowledge("a", 5, 6, [1], now=0) == ErrorCode.INVALID_RECORD_STATE
    )  # never delivered
    assert sp.acknowledge("a", 5, 6, [AckType.GAP], now=0) == ErrorCode.NONE  # gaps are fine


def test_max_in_flight_and_window_skip() -> None:
    sp = SharePartition(start_offset=0, max_in_flight=3)
    assert sp.acquire("a", 0, 9, 10, now=0) == [StateBatch(0, 2, RecordState.ACQUIRED, 1)]
    assert sp.first_wanted() is None
    assert not sp.has_available(10)
    sp.acknowledge("a", 0, 0, [1], now=0)
    assert sp.has_available(10)
    sp.skip(3, 3)  # a control batch
    assert sp.end_offset == 4
    assert sp.acquire("a", 5, 9, 10, now=0) == []  # the window (offsets 1..3) is full
    sp.acknowledge("a", 1, 2, [1], now=0)
    assert sp.start_offset == 4  # past the control batch
    assert sp.acquire("a", 5, 9, 10, now=0) == [
        StateBatch(5, 7, RecordState.ACQUIRED, 1)
    ]  # 4 is a gap


def test_a_full_window_never_skips_the_rest_of_a_batch() -> None:
    """The window fills in the middle of batch 0..9: the next batch (20..29, after a
    compacted gap) and a control batch must not move past offsets 4..9."""
    sp = SharePartition(start_offset=0, max_in_flight=4)
    assert sp.acquire("a", 0, 9, 100, now=0) == [StateBatch(0, 3, RecordState.ACQUIRED, 1)]
    assert sp.acquire("a", 20, 29, 100, now=0) == []
    sp.skip(12, 12)
    assert sp.end_offset == 4
    sp.acknowledge("a", 0, 3, [1], now=0)
    assert sp.first_wanted() == 4
    assert sp.acquire("b", 0, 9, 100, now=0) == [StateBatch(4, 7, RecordState.ACQUIRED, 1)]


def test_snapshot_round_trip_acquired_become_available() -> None:
    sp = SharePartition(start_offset=0, delivery_limit=4)
    sp.acquire("a", 0, 5, 10, now=0)
    sp.acknowledge("a", 1, 1, [1], now=0)
    sp.acknowledge("a", 2, 2, [3], now=0)
    batches = sp.state_batches()
    back = SharePartition.restore(sp.start_offset, batches, 4, 1000)
    assert back.start_offset == 0
    assert back.records[0].state is RecordState.AVAILABLE and back.records[0].delivery_count == 1
    assert back.records[1].state is RecordState.ACKNOWLEDGED
    assert back.records[2].state is RecordState.ARCHIVED
    assert back.end_offset == 6
    assert back.acquire("b", 0, 5, 10, now=0) == [
        StateBatch(0, 0, RecordState.ACQUIRED, 2),
        StateBatch(3, 5, RecordState.ACQUIRED, 2),
    ]


def test_truncate_and_reset() -> None:
    sp = SharePartition(start_offset=0)
    sp.acquire("a", 0, 9, 10, now=0)
    sp.truncate_below(5)
    assert sp.start_offset == 5 and min(sp.records) == 5
    sp.reset(20)
    assert (sp.start_offset, sp.end_offset, sp.records) == (20, 20, {})


LIMIT = 3
MEMBERS = ("a", "b", "c")
END = 30  # the log holds offsets 0..29, in batches of 3


class ShareMachine(RuleBasedStateMachine):
    """Model: per offset, the number of deliveries and whether it is finished (accepted or
    dead). Invariants: a record is finished at most once, never delivered more than LIMIT
    times, every delivery count reported is the model's, dead letters are exactly the
    rejected and over-limit records, and the start offset never passes an unfinished one."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.sp = SharePartition(start_offset=0, delivery_limit=LIMIT, lock_ms=50, max_in_flight=7)
        self.deliveries = [0] * END
        self.accepted: set[int] = set()
        self.dead: dict[int, str] = {}
        self.holder: dict[int, str] = {}

    @rule(member=st.sampled_from(MEMBERS), n=st.integers(1, 12), batches=st.integers(1, 4))
    def acquire(self, member: str, n: int, batches: int) -> None:
        """As the broker reads: from the batch holding the first acquirable offset on."""
        start = self.sp.first_wanted()
        if start is None or start >= END:
            return
        got: list[StateBatch] = []
        for b in range(start // 3, min(start // 3 + batches, END // 3)):
            got += self.sp.acquire(
                member,
                b * 3,
                b * 3 + 2,
                n - sum(r.last_offset - r.first_offset + 1 for r in got),
                self.now,
            )
        for r in got:
            for o in range(r.first_offset, r.last_offset + 1):
                assert o not in self.holder, "acquired twice"
                assert o not in self.accepted and o not in self.dead
                self.deliveries[o] += 1
                assert r.delivery_count == self.deliveries[o]
                assert self.deliveries[o] <= LIMIT
                self.holder[o] = member

    @precondition(lambda self: bool(self.holder))
    @rule(data=st.data(), kind=st.sampled_from([AckType.ACCEPT, AckType.RELEASE, AckType.REJECT]))
    def acknowledge_held(self, data: st.DataObject, kind: AckType) -> None:
        o = data.draw(st.sampled_from(sorted(self.holder)))
        member = self.holder[o]
        assert self.sp.acknowledge(member, o, o, [kind], self.now) == ErrorCode.NONE
        del self.holder[o]
        if kind is AckType.ACCEPT:
            self.accepted.add(o)
        elif kind is AckType.REJECT:
            self.dead[o] = REASON_REJECTED
        elif self.deliveries[o] >= LIMIT:
            self.dead[o] = REASON_DELIVERY_LIMIT

    @rule(member=st.sampled_from(MEMBERS), o=st.integers(0, END - 1))
    def acknowledge_not_held(self, member: str, o: int) -> None:
        if self.holder.get(o) == member:
            return
        assert (
            self.sp.acknowledge(member, o, o, [AckType.ACCEPT], self.now)
            == ErrorCode.INVALID_RECORD_STATE
        )

    @rule(member=st.sampled_from(MEMBERS))
    def member_leaves(self, member: str) -> None:
        self.sp.release_member(member)
        for o in [o for o, m in self.holder.items() if m == member]:
            del self.holder[o]
            if self.deliveries[o] >= LIMIT:
                self.dead[o] = REASON_DELIVERY_LIMIT

    @rule(dt=st.integers(1, 60))
    def time_passes(self, dt: int) -> None:
        before = {o: self.sp.records[o].deadline for o in self.holder}
        self.now += dt
        self.sp.expire(self.now)
        for o, deadline in before.items():
            if deadline is not None and deadline <= self.now:
                del self.holder[o]
                if self.deliveries[o] >= LIMIT:
                    self.dead[o] = REASON_DELIVERY_LIMIT

    @rule()
    def restart(self) -> None:
        """A crash: the persisted form comes back; what was held is Available again."""
        self.sp = SharePartition.restore(
            self.sp.start_offset, self.sp.state_batches(), LIMIT, 50, 7
        )
        for o in self.holder:
            if self.deliveries[o] >= LIMIT:
                self.dead[o] = REASON_DELIVERY_LIMIT
        self.holder.clear()

    @invariant()
    def dead_letters_and_start(self) -> None:
        reported = {d.offset: d.reason for d in self.sp.drain_dead()}
        self.reported = getattr(self, "reported", {})
        for o, reason in reported.items():
            assert o not in self.reported, "dead-lettered twice"
            self.reported[o] = reason
        assert self.reported == self.dead
        finished = self.accepted | set(self.dead)
        for o in range(self.sp.start_offset):
            assert o in finished, f"start offset {self.sp.start_offset} passed unfinished {o}"
        assert self.accepted.isdisjoint(self.dead)


TestShareMachine = ShareMachine.TestCase
TestShareMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
