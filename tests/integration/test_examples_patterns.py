"""The riverbed.patterns examples run with their one command and say what the lecture says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(name: str) -> list[str]:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name / "run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_bank_account_snapshot_and_five_transactions() -> None:
    lines = _run("bank-account")
    assert "yesterday: 11 events, balance $20,000.00" in lines
    assert "nightly snapshot: acc-1001 at version 11" in lines
    assert sum(line.startswith("today: ") and " -> version " in line for line in lines) == 5
    assert any(line.startswith("today: withdraw $50,000.00 refused: insufficient funds") for line in lines)
    assert any(line.startswith("tellers at version 16: teller 1 accepted, teller 2 refused (wrong expected version") for line in lines)
    assert any(line.startswith("owner reboot: partition ") and line.endswith("restored from the nightly checkpoint, 6 events replayed; balance $20,484.51") for line in lines)
    assert "after reboot: acc-1001 at version 17, balance $20,484.51: snapshot at version 11 + 6 events replayed" in lines
    assert "without the snapshot: 17 events replayed, balance $20,484.51" in lines
    assert "time travel: as of last night $20,000.00; as of version 13 $21,154.50" in lines


def test_order_placed_v1_upcast_to_v2() -> None:
    lines = _run("order-upcast")
    assert "read A-2020-1: stored v1, read as v2 OrderPlaced(orderId='A-2020-1', amountCents=1999, currency='USD')" in lines
    assert "read A-2025-7: stored v2, read as v2 OrderPlaced(orderId='A-2025-7', amountCents=4200, currency='EUR')" in lines
    assert "the stored record is unchanged: v1 {'orderId': 'A-2020-1', 'amount': 19.99}" in lines
    assert any(line.startswith("OrderPlaced v3: NoUpcastPath:") for line in lines)
    assert any(line.startswith("OrderTeleported v1: UnknownEventType: unknown event type 'OrderTeleported'") for line in lines)


def test_order_saga_refund_on_inventory_failed_under_injected_failures() -> None:
    lines = _run("order-saga")
    assert "injected: the orchestrator crashed after starting the sagas" in lines
    assert "injected: the broker was killed (-9) and restarted mid-saga" in lines
    assert "saga A: completed; payments balance $30" in lines
    assert "saga B: compensated (inventory failed: lamp out of stock); payments balance $0" in lines
    assert "saga C: compensated (inventory timed out after 10 s); payments balance $0" in lines
    assert "charges per order: {'A': 1, 'B': 1, 'C': 1}" in lines
    # compensation in reverse order for C: the reservation released before the refund
    assert lines.index("inventory: released any reservation for C") < lines.index("payments: refunded C $15")
    assert sum(line == "payments: refunded B $20" for line in lines) == 1
    table = lines[lines.index("riverbed saga list --saga order:") + 1 :]
    assert [row.split()[:2] for row in table[1:]] == [["A", "completed"], ["B", "compensated"], ["C", "compensated"]]


def test_cqrs_read_models_in_redis_and_postgresql() -> None:
    pytest.importorskip("psycopg")
    pytest.importorskip("redis")
    lines = _run("cqrs-read-model")
    assert "lag after projecting: redis 0, postgresql 0" in lines
    assert "redis cart-1: {'_version': '3', 'items': '3', 'status': 'checked out', 'total_cents': '3250'}" in lines
    assert "postgresql carts: [('cart-1', 3250, 'checked out'), ('cart-2', 1200, 'open'), ('cart-3', 7050, 'checked out')]" in lines
    assert "postgresql units sold: [('mug', 3), ('pot', 1), ('tea', 4)]" in lines
    assert "redelivered cart-2 v1: ignored by redis 1, by postgresql 1; cart-2 total still 1200" in lines
    assert any(line.startswith("rebuilt: postgresql carts [('cart-1', 3250, 'checked out')") and "redis generation g2" in line for line in lines)
