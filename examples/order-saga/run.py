"""The lecture's order saga: order -> payment -> inventory, refund on InventoryFailed, in one command:

    .venv/bin/python examples/order-saga/run.py                  # own broker, with injected failures
    .venv/bin/python examples/order-saga/run.py --bootstrap 127.0.0.1:9092   (no broker restart)

An orchestrator runs three orders through two participants (payments, inventory):

- A: paid, reserved -> completed;
- B: paid, InventoryFailed (out of stock) -> the payment is refunded;
- C: paid, the inventory service never answers -> the step times out -> the reservation is
  released (in case it happened late) and the payment refunded, in reverse order.

Injected failures (own broker only): the orchestrator "crashes" right after starting the sagas
and a new instance resumes from the compacted state topic; the broker is killed with -9 and
restarted mid-saga. Every Charge runs exactly once per order although commands are re-sent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from riverbed.client import ClusterSettings
from riverbed.patterns import saga_state as sm
from riverbed.patterns.sagas import NoReply, SagaOrchestrator, SagaParticipant, StepFailed

ORDER_SAGA = sm.SagaDefinition("order", (
    sm.Step("payment", "payments.commands", "ChargePayment", "RefundPayment", timeout=10),
    # long enough for the broker's kill -9 and restart mid-saga: a step's timer runs from its
    # command, so with 2 s a slow restart made saga A time out too (seen in CI)
    sm.Step("inventory", "inventory.commands", "ReserveStock", "ReleaseStock", timeout=10),
))
STOCK = {"book": 5, "lamp": 0}


class Services:
    """The payments and inventory services' own state (what the saga must keep consistent)."""

    def __init__(self) -> None:
        self.balance: dict[str, int] = {}
        self.charges: dict[str, int] = {}
        self.log: list[str] = []

    def charge(self, d: dict[str, Any]) -> dict[str, Any]:
        self.charges[d["order"]] = self.charges.get(d["order"], 0) + 1
        self.balance[d["order"]] = self.balance.get(d["order"], 0) + d["amount"]
        self.log.append(f"payments: charged {d['order']} ${d['amount']}")
        return {"paymentId": f"pay-{d['order']}"}

    def refund(self, d: dict[str, Any]) -> None:
        self.balance[d["order"]] = self.balance.get(d["order"], 0) - d["amount"]
        self.log.append(f"payments: refunded {d['order']} ${d['amount']}")

    def reserve(self, d: dict[str, Any]) -> None:
        if d["sku"] == "radio":
            raise NoReply()  # the inventory service never answers for this one
        if STOCK.get(d["sku"], 0) < 1:
            self.log.append(f"inventory: InventoryFailed for {d['order']} ({d['sku']} out of stock)")
            raise StepFailed(f"{d['sku']} out of stock")
        STOCK[d["sku"]] -= 1
        self.log.append(f"inventory: reserved {d['sku']} for {d['order']}")

    def release(self, d: dict[str, Any]) -> None:
        self.log.append(f"inventory: released any reservation for {d['order']}")


def run(bootstrap: str, restart_broker: Any = None) -> int:
    settings = ClusterSettings(bootstrap=bootstrap)
    svc = Services()
    orch = SagaOrchestrator(settings, ORDER_SAGA, txn_timeout=1.5)
    orders = {"A": {"order": "A", "amount": 30, "sku": "book"}, "B": {"order": "B", "amount": 20, "sku": "lamp"}, "C": {"order": "C", "amount": 15, "sku": "radio"}}
    for oid, data in orders.items():
        orch.start(data, saga_id=oid)
    orch.poll(0.1)
    if restart_broker is not None:
        orch.close()
        print("injected: the orchestrator crashed after starting the sagas")
        orch = SagaOrchestrator(settings, ORDER_SAGA, txn_timeout=1.5)
        print(f"a new orchestrator resumed {sum(not s.finished for s in orch.sagas.values())} unfinished sagas from order.saga-state")
    pay = SagaParticipant(settings, "payments.commands", {"ChargePayment": svc.charge, "RefundPayment": svc.refund}, "payments", txn_timeout=1.5)
    inv = SagaParticipant(settings, "inventory.commands", {"ReserveStock": svc.reserve, "ReleaseStock": svc.release}, "inventory", txn_timeout=1.5)
    restarted = restart_broker is None
    deadline = time.monotonic() + 120
    while not all((s := orch.state(o)) is not None and s.finished for o in orders):
        if time.monotonic() > deadline:
            print("sagas did not finish in time", file=sys.stderr)
            return 1
        pay.poll(0.05)
        inv.poll(0.05)
        orch.poll(0.05)
        if not restarted and svc.charges:
            restart_broker()
            restarted = True
            print("injected: the broker was killed (-9) and restarted mid-saga")
    for line in svc.log:
        print(line)
    for oid in orders:
        s = orch.state(oid)
        assert s is not None
        print(f"saga {oid}: {s.status}{' (' + s.reason + ')' if s.reason else ''}; payments balance ${svc.balance.get(oid, 0)}")
    print(f"charges per order: {dict(sorted(svc.charges.items()))}")
    for x in (orch, pay, inv):
        x.close()
    print("riverbed saga list --saga order:")
    subprocess.run([sys.executable, "-m", "riverbed", "saga", "list", "--saga", "order", "-b", bootstrap], check=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="an existing cluster (default: start a riverbed broker)")
    args = ap.parse_args(argv)
    if args.bootstrap:
        return run(args.bootstrap)
    from riverbed.testing import BrokerProcess

    with tempfile.TemporaryDirectory(prefix="order-saga-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", extra=["--log-level", "WARNING", "--set", "group.initial.rebalance.delay.ms=0"]).start()

        def restart() -> None:
            broker.kill()
            broker.start()

        try:
            return run(broker.bootstrap, restart)
        finally:
            broker.terminate()


if __name__ == "__main__":
    sys.exit(main())
