"""CLI progress bars (issue 18 item 4): `riverbed consume` of a topic draws a bar on stderr when
stderr is a terminal and the records go to a pipe; piped or redirected, stderr stays empty and
stdout is the records alone. A real broker, the real command in a subprocess, a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading

import pytest
from confluent_kafka import Producer

from riverbed.cli.progress import wanted
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_when_a_bar_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_PROGRESS", raising=False)
    tty, pipe = _Tty(), io.StringIO()
    assert wanted(stderr=tty, stdout=pipe)
    assert wanted(stderr=tty, stdout=tty)  # nothing else on stdout (reset-offsets, replay)
    assert not wanted(data_on_stdout=True, stderr=tty, stdout=tty)  # records on the terminal
    assert wanted(data_on_stdout=True, stderr=tty, stdout=pipe)
    assert not wanted(stderr=pipe, stdout=pipe)
    monkeypatch.setenv("RIVERBED_PROGRESS", "0")
    assert not wanted(stderr=tty, stdout=pipe)
    monkeypatch.setenv("RIVERBED_PROGRESS", "1")
    assert wanted(stderr=pipe, stdout=pipe)


def test_consume_draws_a_bar_on_a_terminal_only(riverbed_broker: EmbeddedBroker) -> None:
    p = Producer({"bootstrap.servers": riverbed_broker.bootstrap})
    for i in range(300):
        p.produce("progress-topic", value=f"record-{i}".encode())
    assert p.flush(10) == 0
    cmd = [sys.executable, "-m", "riverbed", "consume", "progress-topic", "--from-beginning", "-b", riverbed_broker.bootstrap]
    env = {k: v for k, v in os.environ.items() if k != "RIVERBED_PROGRESS"}
    piped = subprocess.run(cmd, capture_output=True, timeout=60, env=env)
    assert piped.returncode == 0
    lines = piped.stdout.decode().splitlines()
    assert len(lines) == 300 and [line.rsplit("value=", 1)[1] for line in lines] == [f"record-{i}" for i in range(300)]
    assert piped.stderr == b""
    leader, follower = pty.openpty()
    drawn = bytearray()

    def drain() -> None:  # read the terminal while the command runs (a full pty would block it)
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=follower, timeout=60, env={**env, "COLUMNS": "100"})
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    assert proc.returncode == 0
    assert proc.stdout.decode().splitlines() == lines  # the data untouched
    assert b"consume progress-topic" in drawn and b"/300" in bytes(drawn)
