"""The classic group's state machine as data.

`TRANSITIONS` is the only place that says which state follows which: the coordinator moves a
group by looking up (state, trigger) here and fails loudly on a pair that is not listed.
`state_diagram()` renders the same table as Mermaid for docs/consumer-groups.md, and a test
checks that the document carries the current rendering.

Run ``python -m riverbed.coordinator.group_states`` to print the diagram.
"""

from __future__ import annotations

from enum import Enum

from riverbed.coordinator.group_types import GroupState


class Trigger(Enum):
    """What can happen to a group; the value is the label drawn on the diagram's arrow."""

    MEMBER_JOINED = "member joins, changes metadata, or leader rejoins"
    MEMBER_REMOVED = "member leaves, or misses its session or sync deadline"
    JOIN_COMPLETED = "all members rejoined or rebalance timeout"
    JOIN_COMPLETED_EMPTY = "join phase over, no member left"
    ASSIGNMENT_RECEIVED = "leader sends SyncGroup with the assignment"
    DELETED = "DeleteGroups, or offsets expired"


_E = GroupState.EMPTY
_P = GroupState.PREPARING_REBALANCE
_C = GroupState.COMPLETING_REBALANCE
_S = GroupState.STABLE
_D = GroupState.DEAD

#: (state, trigger) -> next state. A pair that maps to its own state is accepted and changes
#: nothing (joins and leaves during PreparingRebalance only change who the rebalance waits for).
TRANSITIONS: dict[tuple[GroupState, Trigger], GroupState] = {
    (_E, Trigger.MEMBER_JOINED): _P,
    (_E, Trigger.DELETED): _D,
    (_P, Trigger.MEMBER_JOINED): _P,
    (_P, Trigger.MEMBER_REMOVED): _P,
    (_P, Trigger.JOIN_COMPLETED): _C,
    (_P, Trigger.JOIN_COMPLETED_EMPTY): _E,
    (_C, Trigger.ASSIGNMENT_RECEIVED): _S,
    (_C, Trigger.MEMBER_JOINED): _P,
    (_C, Trigger.MEMBER_REMOVED): _P,
    (_S, Trigger.MEMBER_JOINED): _P,
    (_S, Trigger.MEMBER_REMOVED): _P,
}

#: How a group comes into being (it is not a transition of an existing group).
INITIAL_STATES: dict[str, GroupState] = {
    "first JoinGroup or OffsetCommit, or loaded without members": _E,
    "loaded from __consumer_offsets with members": _S,
}


class IllegalTransition(RuntimeError):
    """A (state, trigger) pair the table does not allow: a coordinator bug, never a client error."""


def next_state(state: GroupState, trigger: Trigger) -> GroupState:
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(f"{trigger.name} is not allowed in state {state.value}") from None


def state_diagram() -> str:
    """The transition table as a Mermaid state diagram (without the code fence)."""
    lines = ["stateDiagram-v2"]
    for label, state in INITIAL_STATES.items():
        lines.append(f"    [*] --> {state.value} : {label}")
    for (state, trigger), target in TRANSITIONS.items():
        lines.append(f"    {state.value} --> {target.value} : {trigger.value}")
    lines.append(f"    {_D.value} --> [*]")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(state_diagram(), end="")
