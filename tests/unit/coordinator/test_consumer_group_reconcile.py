"""The reconciliation function on its own, and the member-state diagram in the docs."""

from __future__ import annotations

import uuid
from pathlib import Path

from riverbed.coordinator.consumer_group_reconcile import (
    MEMBER_TRANSITIONS,
    MemberAssignment,
    member_state_diagram,
    reconcile,
)
from riverbed.coordinator.consumer_group_types import MemberState

DOC = Path(__file__).resolve().parents[3] / "docs" / "consumer-groups.md"
T = uuid.UUID(int=1)
U = uuid.UUID(int=2)
SUBSCRIBED = frozenset({T, U})


def parts(*ps: int, topic: uuid.UUID = T) -> dict[uuid.UUID, frozenset[int]]:
    return {topic: frozenset(ps)} if ps else {}


def run(
    current: MemberAssignment,
    target: dict[uuid.UUID, frozenset[int]],
    *,
    epoch: int = 5,
    owners: dict[tuple[uuid.UUID, int], str] | None = None,
    owned: list[tuple[uuid.UUID, list[int]]] | None = None,
    subscribed: frozenset[uuid.UUID] = SUBSCRIBED,
    changed: bool = False,
) -> MemberAssignment:
    table = owners or {}
    return reconcile(
        "m",
        current,
        target_epoch=epoch,
        target=target,
        subscribed=subscribed,
        owner=lambda t, p: table.get((t, p)),
        owned=owned,
        subscription_changed=changed,
    )


def test_reconciled_member_is_left_alone() -> None:
    current = MemberAssignment(MemberState.STABLE, 5, 4, parts(0, 1))
    assert run(current, parts(0, 1)) is current


def test_new_free_partitions_come_with_the_new_epoch() -> None:
    current = MemberAssignment(MemberState.STABLE, 4, 3, parts(0))
    new = run(current, parts(0, 1))
    assert new == MemberAssignment(MemberState.STABLE, 5, 4, parts(0, 1))


def test_revocation_comes_first_and_keeps_the_epoch() -> None:
    current = MemberAssignment(MemberState.STABLE, 4, 3, parts(0, 1))
    new = run(current, parts(0, 2), owned=[(T, [0, 1])])
    assert new == MemberAssignment(MemberState.UNREVOKED_PARTITIONS, 4, 3, parts(0), parts(1))
    # Still owning 1: nothing moves.
    assert run(new, parts(0, 2), owned=[(T, [0, 1])]) is new
    assert run(new, parts(0, 2), owned=None) is new
    # Released: the member moves on and gets 2.
    done = run(new, parts(0, 2), owned=[(T, [0])])
    assert done == MemberAssignment(MemberState.STABLE, 5, 4, parts(0, 2))


def test_partitions_already_given_up_are_not_waited_for() -> None:
    current = MemberAssignment(MemberState.STABLE, 4, 3, parts(0, 1))
    new = run(current, parts(0), owned=[(T, [0])])
    assert new == MemberAssignment(MemberState.STABLE, 5, 4, parts(0))


def test_partitions_owned_elsewhere_are_withheld() -> None:
    current = MemberAssignment(MemberState.STABLE, 4, 3, {})
    new = run(current, parts(0, 1), owners={(T, 1): "other"})
    assert new == MemberAssignment(MemberState.UNRELEASED_PARTITIONS, 5, 4, parts(0))
    assert run(new, parts(0, 1), owners={(T, 1): "other"}) == new
    released = run(new, parts(0, 1), owners={(T, 0): "m"})
    assert released == MemberAssignment(MemberState.STABLE, 5, 4, parts(0, 1))


def test_unsubscribed_topics_are_dropped_within_the_epoch() -> None:
    both = {**parts(0), **parts(0, topic=U)}
    current = MemberAssignment(MemberState.STABLE, 5, 4, both)
    new = run(current, both, subscribed=frozenset({T}), changed=True, owned=[(U, [0])])
    assert new == MemberAssignment(
        MemberState.UNREVOKED_PARTITIONS, 5, 4, parts(0), parts(0, topic=U)
    )


def test_every_transition_is_in_the_table() -> None:
    states = set(MemberState)
    assert {s for s, _ in MEMBER_TRANSITIONS} == states
    assert {t for _, t in MEMBER_TRANSITIONS} == states


def test_docs_carry_the_current_member_diagram() -> None:
    text = DOC.read_text()
    assert f"```mermaid\n{member_state_diagram()}```" in text, (
        "docs/consumer-groups.md is out of date: paste the output of "
        "`python -m riverbed.coordinator.consumer_group_reconcile` into its mermaid block"
    )
