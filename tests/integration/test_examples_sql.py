"""examples/sql/run.py as a user runs it: one command, its own `riverbed serve` and `riverbed sql serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RUN = Path(__file__).resolve().parents[2] / "examples" / "sql" / "run.py"


def test_sql_example() -> None:
    r = subprocess.run([sys.executable, str(RUN)], capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    vip, revenue, joined, fk_joined = (json.loads(x) for x in r.stdout.splitlines())
    assert vip["rows"] == [["u1", "Ada", "VIP"], ["u3", "Cy", "VIP"]]
    assert revenue["columns"] == ["SHOP", "WINDOWSTART", "WINDOWEND", "REVENUE", "ORDERS"]
    assert revenue["rows"] == [["north", 1699999980000, 1700000040000, 15.5, 2], ["north", 1700000040000, 1700000100000, 2.5, 1]]
    assert joined["rows"] == [["o1", "Ada", "NO", 10.0], ["o2", "Bob", "IT", 5.5], ["o3", "Ada", "NO", 7.0], ["o4", None, None, 2.5]]
    assert fk_joined["columns"] == ["ORDER_ID", "STATUS", "CUSTOMER", "COUNTRY"]
    assert fk_joined["rows"] == [["o1", "shipped", "Ada", "NO"], ["o2", "open", "Bob", "IT"]]
