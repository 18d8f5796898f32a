"""Pure parts of riverbed.patterns: upcaster chains, envelopes, the type registry, snapshot
restore (old shape, corrupt), and the saga state machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.patterns import (
    Aggregate,
    Envelope,
    InvalidEnvelope,
    NoUpcastPath,
    TypeRegistry,
    UnknownEventType,
    Upcasters,
)
from riverbed.patterns import saga_state as sm
from riverbed.patterns.repository import from_snapshot, snapshot_type
from riverbed.patterns.snapshots import EveryNEvents, make_snapshot


def _chain() -> Upcasters:
    u = Upcasters()

    @u.register("OrderPlaced", 1)
    def v1(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "currency": "USD"}

    @u.register("OrderPlaced", 2)
    def v2(d: dict[str, Any]) -> dict[str, Any]:
        return {"total": {"amount": d.pop("amount"), "currency": d.pop("currency")}, **d}

    return u


def test_upcaster_chain_v1_to_v3_and_errors() -> None:
    u = _chain()
    assert u.upcast("OrderPlaced", 1, {"id": "A", "amount": 5}, 3) == {"id": "A", "total": {"amount": 5, "currency": "USD"}}
    assert u.upcast("OrderPlaced", 2, {"id": "A", "amount": 5, "currency": "EUR"}, 3)["total"]["currency"] == "EUR"
    with pytest.raises(NoUpcastPath, match="no upcaster from Shipped v1"):
        u.upcast("Shipped", 1, {}, 2)
    with pytest.raises(NoUpcastPath, match="newer than the v2"):
        u.upcast("OrderPlaced", 3, {}, 2)
    with pytest.raises(ValueError, match="already registered"):
        u.add("OrderPlaced", 1, lambda d: d)


def test_upcasting_never_changes_the_stored_data() -> None:
    stored = {"id": "A", "amount": 5}
    _chain().upcast("OrderPlaced", 1, stored, 3)
    assert stored == {"id": "A", "amount": 5}


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.integers(1, 10**6), st.dictionaries(st.text(max_size=5), st.integers(), max_size=4), st.none() | st.text(max_size=10))
def test_envelope_round_trip(agg: str, version: int, data: dict[str, int], command: str | None) -> None:
    env = Envelope("Deposited", 3, "account", agg, version, data, source="bank", command_id=command, time=datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    back = Envelope.decode(env.encode(), 1, 2)
    assert (back.event_type, back.event_version, back.aggregate_id, back.aggregate_version, back.data, back.command_id, back.time, back.offset) == (
        "Deposited", 3, agg, version, data, command, env.time, 2)


@pytest.mark.parametrize("raw, match", [
    (b"not json", "not JSON"), (b"[]", "JSON object"), (b'{"eventId": "x"}', "lacks"), (None, "tombstone"),
    (b'{"eventId":"x","eventType":"T","eventVersion":"one","timestamp":"2025-01-01T00:00:00Z","aggregateId":"a","aggregateVersion":1}', "malformed"),
])
def test_bad_envelopes_are_clear_errors(raw: bytes | None, match: str) -> None:
    with pytest.raises(InvalidEnvelope, match=match):
        Envelope.decode(raw)


types = TypeRegistry(_chain())


@types.event("OrderPlaced", version=3)
@dataclass(frozen=True)
class OrderPlaced:
    id: str
    total: dict[str, Any]


def test_registry_upcasts_to_the_class_and_refuses_unknown_types() -> None:
    env = Envelope("OrderPlaced", 1, "order", "A", 1, {"id": "A", "amount": 5})
    assert types.to_event(env) == OrderPlaced("A", {"amount": 5, "currency": "USD"})
    with pytest.raises(UnknownEventType, match="unknown event type 'Refunded'"):
        types.to_event(Envelope("Refunded", 1, "order", "A", 2, {}))
    with pytest.raises(InvalidEnvelope, match="does not fit OrderPlaced"):
        types.to_event(Envelope("OrderPlaced", 3, "order", "A", 1, {"id": "A"}))


@dataclass
class Account(Aggregate):
    aggregate_type = "account"
    snapshot_version = 2
    balance_cents: int = 0


snap_types = TypeRegistry()


@snap_types.upcasters.register(snapshot_type("account"), 1)
def _account_v1(state: dict[str, Any]) -> dict[str, Any]:
    return {"balance_cents": state["balance"] * 100}


def test_snapshot_restore_upcasts_or_discards(caplog: pytest.LogCaptureFixture) -> None:
    now = datetime.now(UTC)
    v1 = make_snapshot("account", "acc", 30, 0, 99, 1, {"balance": 20000}, now)
    acc = from_snapshot(Account, v1, snap_types)
    assert acc is not None and (acc.balance_cents, acc.version, acc.id) == (2_000_000, 30, "acc")
    assert from_snapshot(Account, make_snapshot("account", "acc", 30, 0, 99, 0, {"x": 1}, now), snap_types) is None
    assert "discarding it" in caplog.text
    bad = make_snapshot("account", "acc", 30, 0, 99, 2, {}, now)
    from dataclasses import replace

    assert from_snapshot(Account, replace(bad, state="{garbage"), snap_types) is None
    assert from_snapshot(Account, replace(bad, state=json.dumps({"nope": 1})), snap_types) is None
    assert "is corrupt" in caplog.text and "does not fit Account" in caplog.text


def test_every_n_events_policy() -> None:
    p = EveryNEvents(100)
    assert [p.due(a, b) for a, b in [(0, 99), (99, 100), (100, 101), (150, 250), (0, 1)]] == [False, True, False, True, False]


# --- the saga state machine ---------------------------------------------------------------
D = sm.SagaDefinition("order", (
    sm.Step("payment", "payments", "Charge", "Refund", timeout=5),
    sm.Step("inventory", "inventory", "Reserve", "Release", timeout=5),
    sm.Step("notify", "email", "Send", None, timeout=5),
), max_attempts=3)


def _reply(step: str, action: str, ok: bool = True, **data: Any) -> dict[str, Any]:
    return {"step": step, "action": action, "ok": ok, "reason": "" if ok else "no stock", "data": data}


def test_saga_completes_in_order() -> None:
    s, out = sm.start(D, "s1", {"order": "A"}, 0.0, "r")
    assert [(o.topic, o.value["command"]) for o in out] == [("payments", "Charge")]
    assert out[0].value["idempotencyKey"] == "s1:payment:do"
    out2 = sm.on_reply(s, D, _reply("payment", "do", charge="c1"), 1.0, "r")
    assert out2 is not None and out2[0].value["command"] == "Reserve" and out2[0].value["data"]["charge"] == "c1"
    assert sm.on_reply(s, D, _reply("payment", "do"), 1.5, "r") is None  # duplicate reply ignored
    sm.on_reply(s, D, _reply("inventory", "do"), 2.0, "r")
    assert sm.on_reply(s, D, _reply("notify", "do"), 3.0, "r") == [] and s.status == sm.COMPLETED


def test_saga_failure_compensates_in_reverse_and_timeout_compensates_the_silent_step() -> None:
    s, _ = sm.start(D, "s2", {}, 0.0, "r")
    sm.on_reply(s, D, _reply("payment", "do"), 1.0, "r")
    out = sm.on_reply(s, D, _reply("inventory", "do", ok=False), 2.0, "r")
    assert out is not None and [o.value["command"] for o in out] == ["Refund"]  # the failed step did nothing
    assert s.status == sm.COMPENSATING and sm.on_reply(s, D, _reply("payment", "compensate"), 3.0, "r") == [] and s.status == sm.COMPENSATED
    t, _ = sm.start(D, "s3", {}, 0.0, "r")
    sm.on_reply(t, D, _reply("payment", "do"), 1.0, "r")
    assert sm.on_timeout(t, D, 2.0, "r") == []  # not yet
    out = sm.on_timeout(t, D, 6.5, "r")
    assert [o.value["command"] for o in out] == ["Release"] and "inventory timed out" in t.reason
    out2 = sm.on_reply(t, D, _reply("inventory", "compensate"), 7.0, "r")
    assert out2 is not None and [o.value["command"] for o in out2] == ["Refund"]


def test_saga_compensation_retries_then_fails() -> None:
    s, _ = sm.start(D, "s4", {}, 0.0, "r")
    sm.on_timeout(s, D, 10.0, "r")  # payment silent: compensate it (Refund)
    assert s.status == sm.COMPENSATING
    assert sm.on_timeout(s, D, 20.0, "r")[0].value["command"] == "Refund"
    assert sm.on_reply(s, D, _reply("payment", "compensate", ok=False), 21.0, "r") is not None
    sm.on_timeout(s, D, 40.0, "r")
    assert s.status == sm.FAILED and "needs attention" in s.reason
    assert sm.SagaState.from_json(s.to_json()) == s


def test_envelope_as_cloudevent() -> None:
    from riverbed.messaging import from_binary, to_binary

    env = Envelope("Deposited", 2, "account", "acc-1", 7, {"cents": 5}, source="bank/core")
    key, value, headers = to_binary(env.to_cloudevent())
    assert key == b"acc-1"
    back = from_binary(key, value, headers)
    assert (back.type, back.source, back.id, back.subject, back.data) == ("Deposited.v2", "bank/core", env.event_id, "acc-1", {"cents": 5})
    assert back.extensions["aggregateversion"] == "7" and back.extensions["aggregatetype"] == "account"
