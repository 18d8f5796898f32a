"""Each example in examples/ runs with its one command and says what the lecture says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_order_events_schema_registry() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples/order-events/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sum(line.startswith("consumed {'orderId': 'A10") for line in lines) == 3
    assert any(line.startswith("v2 (adds amount with a default) accepted: id 2") for line in lines)
    assert any(line.startswith("v3 (adds quantity without a default) refused: HTTP 409") for line in lines)


def test_dead_letters_email_service() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples/dead-letters/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("sent email for ")) == [f"sent email for A{n}" for n in (100, 101, 102, 103, 104, 106, 107)]
    assert "emails sent: 7 (the duplicate of A102 was dropped)" in lines
    dead = sorted(line.split("@", 1)[1] for line in lines if line.startswith("dead letter: "))
    assert dead == [
        "5 after 4 attempts: __main__.MailServerRefused: 550 mailbox unavailable: bounce@example.com",
        "9 after 1 attempts: riverbed.messaging.events.InvalidEvent: required attribute 'id' is missing or empty",
    ]


def test_video_upload_claim_check() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples/video-upload/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("uploaded 2 videos (20 MiB and 2 MiB)") for line in lines)
    assert any(line.startswith("event upload-0 (") and "size=20971520" in line for line in lines)
    assert "transcoder got 20 MiB back, sha256 verified" in lines
    assert any(line.startswith("second event: BlobMissing") for line in lines)


def test_traced_checkout_one_trace() -> None:
    pytest.importorskip("opentelemetry.sdk")
    r = subprocess.run([sys.executable, str(ROOT / "examples/traced-checkout/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    traced = [line for line in lines if " trace=" in line]
    assert [line.split(" trace=")[0] for line in traced] == ["checkout", "payments", "email"]
    assert len({line.split(" trace=")[1].split(":")[0] for line in traced}) == 1  # the same trace id in every service's logs
    assert "0" * 32 not in r.stdout
    tree = lines[lines.index("spans:") + 1 : lines.index("spans:") + 6]
    assert [line.strip().split(" [")[0].split(" ")[0] for line in tree] == ["POST", "send", "process", "send", "process"]
    assert [len(line) - len(line.lstrip()) for line in tree] == [2, 4, 6, 8, 10]  # each a child of the one before
    assert "one trace across 5 spans: True" in lines
