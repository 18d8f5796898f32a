"""Sagas on a real broker: the orchestrator's durable state (restart mid-saga resumes, the
participant's step runs once), compensation in reverse order on failure and on a participant
that never answers, the `riverbed saga` CLI, and choreography with a Reactor."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from riverbed.client import ClusterSettings
from riverbed.patterns import saga_state as sm
from riverbed.patterns.envelope import Envelope
from riverbed.patterns.sagas import (
    NoReply,
    Reactor,
    SagaOrchestrator,
    SagaParticipant,
    StepFailed,
    read_compacted,
)
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Iterator[ClusterSettings]:
    with EmbeddedBroker(group_initial_rebalance_delay_ms=0, accept_replication_factor=True) as broker:
        yield ClusterSettings(bootstrap=broker.bootstrap)


class Shop:
    def __init__(self) -> None:
        self.charged: dict[str, int] = {}
        self.refunded: list[str] = []
        self.reserved: list[str] = []
        self.released: list[str] = []
        self.charges = 0

    def charge(self, d: dict[str, Any]) -> dict[str, Any]:
        self.charges += 1
        self.charged[d["order"]] = d["amount"]
        return {"payment": f"pay-{d['order']}"}

    def refund(self, d: dict[str, Any]) -> None:
        self.refunded.append(d["order"])

    def reserve(self, d: dict[str, Any]) -> None:
        if d["sku"] == "sold-out":
            raise StepFailed("out of stock")
        if d["sku"] == "silent" and d["order"] not in self.released:
            raise NoReply()
        self.reserved.append(d["order"])

    def release(self, d: dict[str, Any]) -> None:
        self.released.append(d["order"])


def test_orchestrated_saga_restart_failure_and_timeout(settings: ClusterSettings, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"order{uuid.uuid4().hex[:6]}"
    d = sm.SagaDefinition(name, (
        sm.Step("payment", f"{name}.payments", "Charge", "Refund", timeout=5),
        sm.Step("inventory", f"{name}.inventory", "Reserve", "Release", timeout=1.5),
    ))
    shop = Shop()
    orch = SagaOrchestrator(settings, d)
    ok = orch.start({"order": "A", "amount": 30, "sku": "book"}, "A")
    fail = orch.start({"order": "B", "amount": 20, "sku": "sold-out"}, "B")
    silent = orch.start({"order": "C", "amount": 10, "sku": "silent"}, "C")
    orch.poll(0.1)  # the three Charge commands are sent and the states stored
    orch.close()  # the orchestrator goes away mid-saga
    pay = SagaParticipant(settings, f"{name}.payments", {"Charge": shop.charge, "Refund": shop.refund}, name)
    inv = SagaParticipant(settings, f"{name}.inventory", {"Reserve": shop.reserve, "Release": shop.release}, name)
    orch = SagaOrchestrator(settings, d)  # a new instance resumes from the state topic (and re-sends the awaited commands)
    assert {s.saga_id for s in orch.sagas.values()} == {ok, fail, silent}

    def done() -> bool:
        pay.poll(0.05)
        inv.poll(0.05)
        return all((s := orch.state(i)) is not None and s.finished for i in (ok, fail, silent))

    orch.run_until(done, timeout=30)
    states = {i: orch.state(i) for i in (ok, fail, silent)}
    assert {i: s.status for i, s in states.items() if s} == {"A": "completed", "B": "compensated", "C": "compensated"}
    assert shop.charges == 3  # each Charge ran once although it was sent twice
    assert sorted(shop.refunded) == ["B", "C"] and shop.released == ["C"] and shop.reserved == ["A"]
    assert "inventory failed: out of stock" in states["B"].reason  # type: ignore[union-attr]
    assert "inventory timed out" in states["C"].reason  # type: ignore[union-attr]
    hist = [h.split(" ", 1)[1] for h in states["C"].history]  # type: ignore[union-attr]
    assert hist[-4:] == ["compensating inventory, payment", "inventory compensated", "payment compensated", "compensated"]
    for x in (orch, pay, inv):
        x.close()
    # the CLI shows where each instance stands
    from riverbed.cli.main import main

    assert main(["saga", "list", "-b", settings.bootstrap, "--saga", name]) == 0
    out = capsys.readouterr().out
    assert "A" in out and "completed" in out and "compensated" in out
    assert main(["saga", "show", "B", "-b", settings.bootstrap, "--saga", name]) == 0
    assert "out of stock" in capsys.readouterr().out
    assert main(["saga", "show", "nope", "-b", settings.bootstrap, "--saga", name]) == 1


def test_choreography_inventory_failed_refunds(settings: ClusterSettings) -> None:
    t = uuid.uuid4().hex[:6]
    orders, payments, inventory = f"orders{t}", f"payments{t}", f"inventory{t}"

    def payment_service(e: Envelope) -> list[tuple[str, Envelope]]:
        if e.event_type == "OrderPlaced":
            return [(payments, Envelope("PaymentCharged", 1, "payment", e.aggregate_id, 1, {"amount": e.data["amount"]}, source="payments"))]
        if e.event_type == "InventoryFailed":  # the compensation
            return [(payments, Envelope("PaymentRefunded", 1, "payment", e.aggregate_id, 2, {}, source="payments"))]
        return []

    def inventory_service(e: Envelope) -> list[tuple[str, Envelope]]:
        if e.event_type == "PaymentCharged":
            kind = "InventoryReserved" if e.aggregate_id != "B" else "InventoryFailed"
            return [(inventory, Envelope(kind, 1, "inventory", e.aggregate_id, 1, {}, source="inventory"))]
        return []

    from riverbed.client import admin, ensure_topics, producer

    ensure_topics(admin(settings), {x: (1, {}) for x in (orders, payments, inventory)})
    pay = Reactor(settings, [orders, inventory], payment_service, f"pay{t}")
    inv = Reactor(settings, [payments], inventory_service, f"inv{t}")
    p = producer(settings)
    for o in ("A", "B"):
        p.produce(orders, key=o.encode(), value=Envelope("OrderPlaced", 1, "order", o, 1, {"amount": 5}).encode())
    p.flush(10)
    deadline = time.monotonic() + 30
    while True:
        pay.poll(0.05)
        inv.poll(0.05)
        got = read_compacted(settings, payments)
        if b"B" in got and b"refunded" in (got[b"B"] or b"").lower():
            break
        assert time.monotonic() < deadline
    assert Envelope.decode(got[b"B"]).event_type == "PaymentRefunded"
    assert Envelope.decode(got[b"A"]).event_type == "PaymentCharged"
    pay.close()
    inv.close()


def test_async_saga_orchestrator(settings: ClusterSettings) -> None:
    import asyncio
    import threading

    from riverbed.patterns.aio import AsyncSagaOrchestrator

    name = f"async{uuid.uuid4().hex[:6]}"
    d = sm.SagaDefinition(name, (sm.Step("ship", f"{name}.shipping", "Ship", None, timeout=10),))
    part = SagaParticipant(settings, f"{name}.shipping", {"Ship": lambda data: {"tracking": f"T-{data['order']}"}}, name)
    stop = threading.Event()
    t = threading.Thread(target=lambda: [part.poll(0.05) for _ in iter(stop.is_set, True)], daemon=True)
    t.start()

    async def main() -> None:
        orch = AsyncSagaOrchestrator(SagaOrchestrator(settings, d))
        sid = await orch.start_saga({"order": "Z"}, "Z")
        state = await orch.finished(sid, 30)
        assert state.status == "completed" and state.data["tracking"] == "T-Z"
        await orch.close()

    try:
        asyncio.run(main())
    finally:
        stop.set()
        t.join()
        part.close()
