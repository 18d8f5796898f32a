"""`riverbed serve` starts the console as a child process (`riverbed console --bootstrap ...`)
beside the broker, and stops it with the broker."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from riverbed.testing import BrokerProcess, free_port

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_runs_the_console_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    proc = BrokerProcess(tmp_path / "data", extra=["--console-listen", f"127.0.0.1:{port}"]).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/health")
                if status == 200 and json.loads(body)["cluster"] == "up":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, proc.log_path.read_text()[-2000:]
            time.sleep(0.1)
        status, body = get(f"http://127.0.0.1:{port}/topics")
        assert status == 200 and proc.bootstrap in body
    finally:
        assert proc.terminate() == 0
    assert "web console on http://127.0.0.1:" in proc.log_path.read_text()
    deadline = time.monotonic() + 10
    while True:  # the child went with the broker: the port is free again
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        assert time.monotonic() < deadline, "the console outlived the broker"
        time.sleep(0.1)
