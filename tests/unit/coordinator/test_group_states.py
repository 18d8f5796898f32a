"""The transition table, the generated diagram in the docs, and the timer queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.coordinator.group import (
    TRANSITIONS,
    GroupState,
    IllegalTransition,
    Trigger,
    state_diagram,
)
from riverbed.coordinator.group_states import next_state
from riverbed.coordinator.group_timers import TimerQueue

DOC = Path(__file__).resolve().parents[3] / "docs" / "consumer-groups.md"


def test_docs_carry_the_current_state_diagram() -> None:
    text = DOC.read_text()
    assert f"```mermaid\n{state_diagram()}```" in text, (
        "docs/consumer-groups.md is out of date: paste the output of "
        "`python -m riverbed.coordinator.group_states` into its mermaid block"
    )


def test_diagram_has_one_arrow_per_table_entry() -> None:
    arrows = [line for line in state_diagram().splitlines() if "-->" in line]
    assert len(arrows) == len(TRANSITIONS) + 3  # two ways to be born, one way to end


def test_table_matches_kafkas_valid_previous_states() -> None:
    # Kafka's GroupState: each state lists the states it may be entered from.
    valid_previous = {
        GroupState.PREPARING_REBALANCE: {
            GroupState.STABLE,
            GroupState.COMPLETING_REBALANCE,
            GroupState.EMPTY,
            GroupState.PREPARING_REBALANCE,  # our self-loops (no actual move)
        },
        GroupState.COMPLETING_REBALANCE: {GroupState.PREPARING_REBALANCE},
        GroupState.STABLE: {GroupState.COMPLETING_REBALANCE},
        GroupState.EMPTY: {GroupState.PREPARING_REBALANCE},
        GroupState.DEAD: set(GroupState),
    }
    for (state, _), target in TRANSITIONS.items():
        assert state in valid_previous[target]


def test_pairs_outside_the_table_are_refused() -> None:
    with pytest.raises(IllegalTransition):
        next_state(GroupState.STABLE, Trigger.DELETED)
    with pytest.raises(IllegalTransition):
        next_state(GroupState.DEAD, Trigger.MEMBER_JOINED)
    assert next_state(GroupState.EMPTY, Trigger.MEMBER_JOINED) is GroupState.PREPARING_REBALANCE


def test_timer_queue_orders_moves_and_cancels() -> None:
    q = TimerQueue()
    assert q.next_deadline() is None and q.pop_due(10**9) is None
    q.set("a", 100)
    q.set("b", 50)
    q.set("c", 70)
    q.set("b", 200)  # moved later
    q.set("c", 10)  # moved earlier
    q.cancel("a")
    assert q.next_deadline() == 10 and len(q) == 2
    assert q.pop_due(9) is None
    assert q.pop_due(1000) == "c"
    assert q.next_deadline() == 200
    assert q.pop_due(1000) == "b"
    assert q.pop_due(1000) is None and len(q) == 0
    q.set("a", 5)  # a key can come back after firing
    assert q.pop_due(5) == "a"


def test_timer_queue_does_not_grow_when_deadlines_move_later() -> None:
    q = TimerQueue()
    for t in range(1000):
        q.set("session", 10_000 + t)
    assert len(q._heap) == 1
    assert q.next_deadline() == 10_999
