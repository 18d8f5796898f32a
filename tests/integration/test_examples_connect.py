"""The connect examples run with their one command and show what the lecture says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_outbox_user_created() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples/outbox-user-created/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sum(" -> 201 " in line for line in lines) == 2
    assert any(" -> 409 " in line for line in lines) and any(" -> 422 " in line for line in lines)
    mails = sorted(line.split(" (")[0] for line in lines if line.startswith("welcome mail to "))
    assert mails == ["welcome mail to alice@example.com", "welcome mail to bob@example.com", "welcome mail to carol@example.com"]
    assert "users: 3, welcome mails: 3" in lines


def test_strangler_fig_read_model() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples/strangler-fig/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "read model equals the legacy database" in lines
    assert sum(": legacy says " in line for line in lines) == 4
