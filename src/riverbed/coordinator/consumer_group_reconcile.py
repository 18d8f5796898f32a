"""Reconciliation of one KIP-848 member towards its target assignment, as a pure function.

The assignor decides where partitions should be (the *target*); this module decides what a
member may hold *now* so that no partition is ever owned by two members (Kafka's
CurrentAssignmentBuilder). A member's view is its epoch, its assigned partitions and the
partitions it has been asked to give up (pending revocation). Each heartbeat:

1. Partitions it holds that the target no longer gives it are revoked first: the member
   stays in its epoch in UNREVOKED_PARTITIONS until its heartbeat no longer lists them.
2. Then it moves to the target epoch and gets the target's partitions that nobody else owns
   (owned = assigned or pending revocation of another member). Partitions still owned
   elsewhere are withheld: UNRELEASED_PARTITIONS, until their owners let go.
3. With nothing left to revoke or wait for, it is STABLE at the target epoch.

The member's previous epoch (accepted once more from a member that missed the answer which
moved it on) is the epoch it had before its last epoch change.

`MEMBER_TRANSITIONS` lists the moves `reconcile` may make; `member_state_diagram()` renders it
for docs/consumer-groups.md (``python -m riverbed.coordinator.consumer_group_reconcile``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from riverbed.coordinator.assignors import Assignment
from riverbed.coordinator.consumer_group_types import MemberState, TopicPartitions

_S = MemberState.STABLE
_REV = MemberState.UNREVOKED_PARTITIONS
_REL = MemberState.UNRELEASED_PARTITIONS

#: (from, to) -> why. Every change `reconcile` makes is one of these.
MEMBER_TRANSITIONS: dict[tuple[MemberState, MemberState], str] = {
    (_S, _S): "new target, all its partitions free",
    (_S, _REV): "new target takes away partitions the member holds",
    (_S, _REL): "new target, some partitions still owned by others",
    (_REV, _REV): "subscription change revokes more",
    (_REV, _S): "revocation acknowledged, all partitions free",
    (_REV, _REL): "revocation acknowledged, some partitions still owned by others",
    (_REL, _S): "the other owners released the partitions",
    (_REL, _REL): "newer target, still waiting for releases",
    (_REL, _REV): "newer target takes away partitions the member holds",
}


def member_state_diagram() -> str:
    """`MEMBER_TRANSITIONS` as a Mermaid state diagram (without the code fence)."""
    lines = ["stateDiagram-v2", f"    [*] --> {_S.name} : joins (epoch 0)"]
    for (source, target), label in MEMBER_TRANSITIONS.items():
        lines.append(f"    {source.name} --> {target.name} : {label}")
    lines.append("    STABLE --> [*] : leaves, or is fenced")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MemberAssignment:
    """The part of a member that reconciliation reads and writes."""

    state: MemberState = MemberState.STABLE
    member_epoch: int = 0
    previous_member_epoch: int = 0
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    def is_reconciled_to(self, target_epoch: int) -> bool:
        return self.state is MemberState.STABLE and self.member_epoch == target_epoch


def owns_any(partitions: Assignment, owned: Sequence[TopicPartitions] | None) -> bool:
    """Whether the member's reported ownership still includes any of `partitions`. A heartbeat
    that does not report ownership (None: unchanged) is assumed to still hold them."""
    if owned is None:
        return True
    for topic_id, reported in owned:
        wanted = partitions.get(topic_id)
        if wanted and any(p in wanted for p in reported):
            return True
    return False


def reconcile(
    member_id: str,
    current: MemberAssignment,
    *,
    target_epoch: int,
    target: Assignment,
    subscribed: frozenset[uuid.UUID],
    owner: Callable[[uuid.UUID, int], str | None],
    owned: Sequence[TopicPartitions] | None,
    subscription_changed: bool,
) -> MemberAssignment:
    """The member's next assignment state (or `current` itself when nothing moves).

    `owner(topic, partition)` names the member that holds a partition (assigned or pending
    revocation), or None; `owned` is what this heartbeat reports (None: unchanged);
    `subscription_changed` forces dropping topics the member no longer subscribes to."""
    if not subscription_changed and current.is_reconciled_to(target_epoch):
        return current
    state = current.state
    if state is _S:
        if current.member_epoch != target_epoch:
            result = _next(member_id, current, target_epoch, target, subscribed, owner, owned)
        elif subscription_changed:
            result = _drop_unsubscribed(current, subscribed, owned)
        else:
            result = current
    elif state is _REV:
        if owns_any(current.pending_revocation, owned):
            if subscription_changed:
                result = _drop_unsubscribed(current, subscribed, owned)
            else:
                result = current
        else:
            result = _next(member_id, current, target_epoch, target, subscribed, owner, owned)
    else:  # UNRELEASED_PARTITIONS: hand out whatever has been released meanwhile
        result = _next(member_id, current, target_epoch, target, subscribed, owner, owned)
    if result is not current and result != current:
        assert (state, result.state) in MEMBER_TRANSITIONS, (state, result.state)
    return result


def _next(
    member_id: str,
    current: MemberAssignment,
    target_epoch: int,
    target: Assignment,
    subscribed: frozenset[uuid.UUID],
    owner: Callable[[uuid.UUID, int], str | None],
    owned: Sequence[TopicPartitions] | None,
) -> MemberAssignment:
    keep: dict[uuid.UUID, frozenset[int]] = {}
    revoke: dict[uuid.UUID, frozenset[int]] = {}
    add: dict[uuid.UUID, frozenset[int]] = {}
    unreleased = False
    for topic_id in sorted(set(target) | set(current.assigned)):
        wanted = target.get(topic_id, frozenset()) if topic_id in subscribed else frozenset()
        held = current.assigned.get(topic_id, frozenset())
        kept = held & wanted
        missing = wanted - kept
        free = frozenset(p for p in missing if owner(topic_id, p) in (None, member_id))
        unreleased = unreleased or len(free) < len(missing)
        if kept:
            keep[topic_id] = kept
        if held - kept:
            revoke[topic_id] = held - kept
        if free:
            add[topic_id] = free
    epoch, previous = current.member_epoch, current.previous_member_epoch
    if revoke and owns_any(revoke, owned):
        # Give up first; stay in the current epoch until the member confirms.
        return MemberAssignment(_REV, epoch, previous, keep, revoke)
    assigned = dict(keep)
    for topic_id, partitions in add.items():
        assigned[topic_id] = assigned.get(topic_id, frozenset()) | partitions
    state = _REL if unreleased else _S
    if target_epoch != epoch:
        previous = epoch
    return MemberAssignment(state, target_epoch, previous, dict(sorted(assigned.items())), {})


def _drop_unsubscribed(
    current: MemberAssignment,
    subscribed: frozenset[uuid.UUID],
    owned: Sequence[TopicPartitions] | None,
) -> MemberAssignment:
    """Within the same epoch, stop assigning topics the member no longer subscribes to."""
    dropped = {t: ps for t, ps in current.assigned.items() if t not in subscribed}
    if not dropped:
        return current
    assigned = {t: ps for t, ps in current.assigned.items() if t in subscribed}
    pending: dict[uuid.UUID, frozenset[int]] = dict(current.pending_revocation)
    for topic_id, partitions in dropped.items():
        pending[topic_id] = pending.get(topic_id, frozenset()) | partitions
    epoch, previous = current.member_epoch, current.previous_member_epoch
    if owns_any(pending, owned):
        return MemberAssignment(_REV, epoch, previous, assigned, dict(sorted(pending.items())))
    return MemberAssignment(
        current.state, epoch, previous, assigned, dict(current.pending_revocation)
    )


def frozen(
    assignment: Mapping[uuid.UUID, frozenset[int]],
) -> tuple[tuple[uuid.UUID, tuple[int, ...]], ...]:
    """An assignment as sorted tuples (snapshots, comparisons)."""
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(assignment.items()) if ps)


if __name__ == "__main__":  # pragma: no cover
    print(member_state_diagram(), end="")
