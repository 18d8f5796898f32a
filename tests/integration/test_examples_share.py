"""examples/image-resize-queue runs with its one command: the work is shared by three
workers and the two bad jobs end in the dead-letter topic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_image_resize_queue() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples/image-resize-queue/run.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("resized "))
    assert summary.startswith("resized 29 images: ")
    counts = [int(part.split()[-1]) for part in summary.split(": ", 1)[1].split(", ")]
    assert len(counts) == 3 and all(counts) and sum(counts) == 29
    dead = sorted(line for line in lines if line.startswith("dead letter: "))
    assert dead == [
        "dead letter: corrupt.pgm from image-jobs-0@30 (rejected, delivery count 1)",
        "dead letter: flaky-storage.pgm from image-jobs-0@20 (delivery count limit reached, delivery count 3)",
    ]
    attempts = sorted(line.split("(attempt ")[1][0] for line in lines if "flaky-storage.pgm failed" in line)
    assert attempts == ["1", "2", "3"]
