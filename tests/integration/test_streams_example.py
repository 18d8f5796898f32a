"""examples/rolling-average/run.py as a user runs it: one command, its own `riverbed serve`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RUN = Path(__file__).resolve().parents[2] / "examples" / "rolling-average" / "run.py"


def test_rolling_average_example() -> None:
    r = subprocess.run([sys.executable, str(RUN)], capture_output=True, text=True, timeout=280, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {(x["start"], x["end"]): (x["count"], x["avg"]) for x in map(json.loads, r.stdout.splitlines())}
    # hopping 60 s windows every 10 s over the fixed transactions (seconds, cost):
    # (0,10) (12,20) (31,30) (59,40) (60,50) (75,60) (118,70) (125,80)
    assert rows[(0, 60)] == (4, 25.0)
    assert rows[(10, 70)] == (4, 35.0)
    assert rows[(60, 120)] == (3, 60.0)
    assert rows[(120, 180)] == (1, 80.0)
    assert rows[(-50, 10)] == (1, 10.0)  # windows start at multiples of the advance, before the first record
    assert len(rows) == 18


RECS = Path(__file__).resolve().parents[2] / "examples" / "recommendations" / "run.py"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_recommendations_example() -> None:
    """Clickstream -> windowed interest counts -> Redis -> web endpoint; its own broker and Redis."""
    r = subprocess.run([sys.executable, str(RECS)], capture_output=True, text=True, timeout=280, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    answer = json.loads(r.stdout.splitlines()[-1])
    assert answer["user"] == "123"
    assert answer["interests"] == [{"category": "dog-food", "views": 5}, {"category": "cat-toys", "views": 1}]
    assert answer["recommend"] == "dog-food"
    assert answer["latency_ms"] > 0
