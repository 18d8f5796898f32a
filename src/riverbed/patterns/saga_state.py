"""The orchestrated saga's state machine, pure: (state, input) -> (state, commands to send).

Inputs: a participant's reply to the current step (``do`` or ``compensate``) and the step's
deadline passing. A failed step is not compensated (it did nothing); a timed-out step IS
(it may have acted late), then every completed step in reverse order. A compensation that
fails or times out is retried (``max_attempts``) and then the saga is ``failed`` (needs a
person). Replies that do not match the current step and phase (late, duplicated) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

RUNNING, COMPENSATING, COMPLETED, COMPENSATED, FAILED = "running", "compensating", "completed", "compensated", "failed"
FINISHED = (COMPLETED, COMPENSATED, FAILED)


@dataclass(frozen=True)
class Step:
    """One saga step: ``command`` sent to ``topic``; ``compensation`` undoes it (None: nothing
    to undo); no reply within ``timeout`` seconds counts as a failure."""

    name: str
    topic: str
    command: str
    compensation: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]
    max_attempts: int = 10  # compensation attempts before the saga is "failed"

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a saga needs at least one step")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: str
    value: dict[str, Any]


@dataclass
class SagaState:
    saga_id: str
    saga: str
    status: str = RUNNING
    step: int = 0  # running: index of the current step; compensating: to_compensate[0] is current
    to_compensate: list[int] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    deadline: float = 0.0
    attempts: int = 0
    reason: str = ""
    history: list[str] = field(default_factory=list)
    updated: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SagaState:
        return cls(**json.loads(raw))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def current(self, d: SagaDefinition) -> tuple[Step, str] | None:
        """(the step awaited, "do" or "compensate"), or None when finished."""
        if self.status == RUNNING:
            return d.steps[self.step], "do"
        if self.status == COMPENSATING and self.to_compensate:
            return d.steps[self.to_compensate[0]], "compensate"
        return None


def idempotency_key(saga_id: str, step: str, action: str) -> str:
    return f"{saga_id}:{step}:{action}"


def _send(s: SagaState, d: SagaDefinition, now: float, reply_to: str) -> list[Outgoing]:
    cur = s.current(d)
    if cur is None:
        return []
    step, action = cur
    s.deadline = now + step.timeout
    command = step.command if action == "do" else step.compensation
    value = {"sagaId": s.saga_id, "saga": s.saga, "step": step.name, "action": action, "command": command, "data": s.data,
             "replyTo": reply_to, "idempotencyKey": idempotency_key(s.saga_id, step.name, action)}
    return [Outgoing(step.topic, s.saga_id, value)]


def _log(s: SagaState, now: float, text: str) -> None:
    s.history.append(f"{now:.3f} {text}")
    s.updated = now


def start(d: SagaDefinition, saga_id: str, data: dict[str, Any], now: float, reply_to: str) -> tuple[SagaState, list[Outgoing]]:
    s = SagaState(saga_id, d.name, data=dict(data))
    _log(s, now, f"started {d.steps[0].name}")
    return s, _send(s, d, now, reply_to)


def _compensate_from(s: SagaState, d: SagaDefinition, steps: list[int], now: float, reply_to: str) -> list[Outgoing]:
    s.to_compensate = [i for i in steps if d.steps[i].compensation is not None]
    s.attempts = 0
    if not s.to_compensate:
        s.status = COMPENSATED
        _log(s, now, "compensated (nothing to undo)")
        return []
    s.status = COMPENSATING
    _log(s, now, f"compensating {', '.join(d.steps[i].name for i in s.to_compensate)}")
    return _send(s, d, now, reply_to)


def on_reply(s: SagaState, d: SagaDefinition, reply: dict[str, Any], now: float, reply_to: str) -> list[Outgoing] | None:
    """The commands a reply causes, or None when the reply is not for the awaited step."""
    cur = s.current(d)
    if cur is None or reply.get("step") != cur[0].name or reply.get("action") != cur[1]:
        return None
    ok = bool(reply.get("ok"))
    reason = str(reply.get("reason") or "")
    if s.status == RUNNING:
        if ok:
            s.data.update(reply.get("data") or {})
            _log(s, now, f"{cur[0].name} done")
            if s.step + 1 < len(d.steps):
                s.step += 1
                return _send(s, d, now, reply_to)
            s.status = COMPLETED
            _log(s, now, "completed")
            return []
        s.reason = f"{cur[0].name} failed: {reason}"
        _log(s, now, s.reason)
        return _compensate_from(s, d, list(range(s.step - 1, -1, -1)), now, reply_to)
    # compensating
    if ok:
        _log(s, now, f"{cur[0].name} compensated")
        s.to_compensate.pop(0)
        s.attempts = 0
        if not s.to_compensate:
            s.status = COMPENSATED
            _log(s, now, "compensated")
            return []
        return _send(s, d, now, reply_to)
    return _retry(s, d, now, reply_to, f"compensation of {cur[0].name} failed: {reason}")


def on_timeout(s: SagaState, d: SagaDefinition, now: float, reply_to: str) -> list[Outgoing]:
    cur = s.current(d)
    if cur is None or now < s.deadline:
        return []
    if s.status == RUNNING:
        s.reason = f"{cur[0].name} timed out after {cur[0].timeout:g} s"
        _log(s, now, s.reason)
        return _compensate_from(s, d, list(range(s.step, -1, -1)), now, reply_to)
    return _retry(s, d, now, reply_to, f"compensation of {cur[0].name} timed out")


def _retry(s: SagaState, d: SagaDefinition, now: float, reply_to: str, why: str) -> list[Outgoing]:
    s.attempts += 1
    _log(s, now, f"{why} (attempt {s.attempts} of {d.max_attempts})")
    if s.attempts >= d.max_attempts:
        s.status = FAILED
        s.reason = f"{why}; needs attention"
        return []
    return _send(s, d, now, reply_to)
