"""A Hypothesis state machine: KIP-848 clients heartbeat, lose answers, dawdle over
revocations, leave and restart in random orders while the clock jumps and topics grow.

Invariants, after every step:
* no partition is owned by two members at once, neither in the coordinator's books (assigned
  or pending revocation) nor by the clients that are still members;
* group epochs, assignment epochs and the epochs each client is given never go backwards;
and whenever the clients that are still running keep heartbeating without surprises, the group
settles: Stable, every member at the assignment epoch and owning exactly its target.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from test_consumer_group_helpers import FakeClock, FakeTopics, Owned, owned

from riverbed.coordinator.consumer_group import (
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    HeartbeatInput,
    HeartbeatOutput,
)
from riverbed.protocol.errors import ErrorCode

GROUP = "g"
SESSION = 10_000
REBALANCE = 5_000
CONFIG = ConsumerGroupConfig(session_timeout_ms=SESSION, heartbeat_interval_ms=1_000)
# Clients 2 and 3 are two incarnations of one static member (same instance id).
CLIENT = st.sampled_from([0, 1, 2, 3])
# A process that gets these errors stops for good (the Java client treats them as fatal).
FATAL = (ErrorCode.UNRELEASED_INSTANCE_ID, ErrorCode.FENCED_INSTANCE_ID)


@dataclass
class Client:
    member_id: str
    topics: list[str] | None
    regex: str | None = None
    instance_id: str | None = None
    running: bool = True
    joined: bool = False
    epoch: int = 0
    owned: dict[uuid.UUID, set[int]] = field(default_factory=dict)
    #: The latest assignment received but not yet applied (a slow revocation callback).
    pending: dict[uuid.UUID, set[int]] | None = None
    reported: Owned | None = None
    full_next: bool = False
    best_epoch: int = 0

    def reset(self) -> None:
        self.joined, self.epoch, self.owned, self.pending = False, 0, {}, None
        self.reported, self.full_next = None, False


class ConsumerGroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.topics = FakeTopics(t=5, u=3)
        self.coord = ConsumerGroupCoordinator(self.clock, self.topics, CONFIG)
        self.clients = [
            Client("c0", ["t", "u"]),
            Client("c1", ["t"]),
            Client("c2", ["t", "u"], instance_id="s"),
            Client("c3", None, regex="t|u", instance_id="s"),
        ]
        self.group_epoch = 0
        self.assignment_epoch = 0

    # -------------------------------------------------------------------------- the client side

    def request(self, c: Client, *, full: bool = False) -> HeartbeatInput:
        if not c.joined:
            return HeartbeatInput(
                GROUP,
                c.member_id,
                0,
                instance_id=c.instance_id,
                rebalance_timeout_ms=REBALANCE,
                subscribed_topic_names=c.topics,
                subscribed_topic_regex=c.regex,
                topic_partitions=[],
            )
        mine = owned(c.owned)
        full = full or c.full_next
        send = full or mine != c.reported
        return HeartbeatInput(
            GROUP,
            c.member_id,
            c.epoch,
            instance_id=c.instance_id,
            rebalance_timeout_ms=REBALANCE if full else -1,
            subscribed_topic_names=c.topics if full else None,
            subscribed_topic_regex=c.regex if full else None,
            topic_partitions=mine if send else None,
        )

    def heartbeat(self, c: Client, *, full: bool = False, apply: bool = True) -> HeartbeatOutput:
        req = self.request(c, full=full)
        resp = self.coord.heartbeat(req)
        if req.topic_partitions is not None:
            c.reported = list(req.topic_partitions)  # type: ignore[arg-type]
        c.full_next = False
        if resp.error:
            assert resp.error in (
                ErrorCode.UNKNOWN_MEMBER_ID,
                ErrorCode.FENCED_MEMBER_EPOCH,
                *FATAL,
            ), resp
            c.reset()
            if resp.error in FATAL:
                c.running = False
            return resp
        assert resp.member_id == c.member_id
        assert resp.member_epoch >= c.best_epoch, (c, resp)
        c.best_epoch = resp.member_epoch
        c.joined, c.epoch = True, resp.member_epoch
        if resp.assignment is not None:
            c.pending = {t: set(ps) for t, ps in resp.assignment}
        if apply:
            self.apply_pending(c)
        return resp

    @staticmethod
    def apply_pending(c: Client) -> None:
        if c.pending is not None:
            c.owned, c.pending = c.pending, None

    # -------------------------------------------------------------------------- rules

    @rule(i=CLIENT, full=st.booleans())
    def poll(self, i: int, full: bool) -> None:
        c = self.clients[i]
        if c.running:
            self.heartbeat(c, full=full)

    @rule(i=CLIENT)
    def poll_but_dawdle(self, i: int) -> None:
        """Heartbeat, but finish revoking only later (the rebalance timeout is ticking)."""
        c = self.clients[i]
        if c.running:
            self.heartbeat(c, apply=False)

    @rule(i=CLIENT)
    def finish_revoking(self, i: int) -> None:
        self.apply_pending(self.clients[i])

    @rule(i=CLIENT)
    def lose_answer(self, i: int) -> None:
        """The request reaches the coordinator, the answer never reaches the client, which
        then sends a full heartbeat (as the Java client does after a timeout)."""
        c = self.clients[i]
        if c.running:
            self.coord.heartbeat(self.request(c))
            c.full_next = True

    @rule(i=CLIENT, temporary=st.booleans())
    def stop(self, i: int, temporary: bool) -> None:
        c = self.clients[i]
        if not c.running:
            return
        if c.joined:
            epoch = -2 if temporary and c.instance_id is not None else -1
            req = HeartbeatInput(GROUP, c.member_id, epoch, instance_id=c.instance_id)
            resp = self.coord.heartbeat(req)
            assert resp.error in (ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID, *FATAL), resp
        c.reset()
        c.running = False

    @rule(i=CLIENT)
    def crash(self, i: int) -> None:
        """The process dies without a word; its session will run out."""
        c = self.clients[i]
        c.reset()
        c.running = False

    @rule(i=CLIENT)
    def start(self, i: int) -> None:
        self.clients[i].running = True

    @rule(ms=st.sampled_from([200, 1_000, 3_000, 6_000, 12_000]))
    def time_passes(self, ms: int) -> None:
        self.clock.now += ms
        self.coord.tick()

    @rule(topic=st.sampled_from(["t", "u"]), tell=st.booleans())
    def add_partition(self, topic: str, tell: bool) -> None:
        count = self.topics.partitions(topic) or 0
        if count < 8:
            self.topics.grow(topic, count + 1)
            if tell:
                self.coord.on_metadata_change()

    @rule()
    def settle(self) -> None:
        """Every running client heartbeats every second, promptly revoking: the group must
        converge (members of stopped clients expire on the way)."""
        for _ in range(SESSION // 1_000 + 15):
            for c in self.clients:
                if c.running:
                    self.heartbeat(c)
            self.clock.now += 1_000
            self.coord.tick()
        for c in self.clients:  # one more round, with the clock still
            if c.running:
                resp = self.heartbeat(c)
                assert resp.error == ErrorCode.NONE, (c, resp)
        [d] = self.coord.describe([GROUP])
        running = {c.member_id: c for c in self.clients if c.running}
        assert d.group_state == ("Stable" if running else "Empty"), d
        assert {m.member_id for m in d.members} == set(running)
        for m in d.members:
            c = running[m.member_id]
            assert m.member_epoch == d.assignment_epoch == c.epoch
            assert m.assignment == m.target_assignment
            assert {tp.topic_id: set(tp.partitions) for tp in m.assignment} == c.owned

    # -------------------------------------------------------------------------- invariants

    @invariant()
    def nobody_shares_a_partition(self) -> None:
        snapshot = self.coord.snapshot(GROUP)
        if snapshot is None:
            return
        books: dict[tuple[uuid.UUID, int], str] = {}
        for m in snapshot.members:
            for topic_id, partitions in (*m.assigned, *m.pending_revocation):
                for p in partitions:
                    assert (topic_id, p) not in books, (topic_id, p, books[(topic_id, p)], m)
                    books[(topic_id, p)] = m.member_id
        members = {m.member_id for m in snapshot.members}
        held: dict[tuple[uuid.UUID, int], str] = {}
        for c in self.clients:
            if not (c.joined and c.member_id in members):
                continue
            for topic_id, ps in c.owned.items():
                for p in ps:
                    assert (topic_id, p) not in held, (topic_id, p, held[(topic_id, p)], c)
                    held[(topic_id, p)] = c.member_id
                    # A member only holds what the coordinator has it down for.
                    assert books.get((topic_id, p)) == c.member_id, (topic_id, p, c)

    @invariant()
    def epochs_only_grow(self) -> None:
        snapshot = self.coord.snapshot(GROUP)
        if snapshot is None:
            return
        assert snapshot.group_epoch >= self.group_epoch
        assert snapshot.assignment_epoch >= self.assignment_epoch
        assert snapshot.assignment_epoch <= snapshot.group_epoch
        self.group_epoch = snapshot.group_epoch
        self.assignment_epoch = snapshot.assignment_epoch


ConsumerGroupMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_consumer_group_machine = ConsumerGroupMachine.TestCase
