"""`riverbed serve --with-sql` runs `riverbed sql serve` as a child process beside the broker;
SIGTERM to the broker stops both cleanly (exit 0, the SQL port free again)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from riverbed.testing import BrokerProcess, free_port

pytestmark = pytest.mark.integration


def test_serve_with_sql_runs_the_sql_server_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = BrokerProcess(
        tmp_path / "data", extra=["--with-sql", "--sql-listen", f"127.0.0.1:{port}"]
    ).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{url}/healthcheck", timeout=5)
                if r.status_code == 200 and r.json()["isHealthy"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, proc.log_path.read_text()[-3000:]
            time.sleep(0.2)
        r = httpx.post(
            f"{url}/ksql",
            timeout=30,
            json={
                "ksql": (
                    "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=1);"
                    "INSERT INTO users (id, name) VALUES ('u1', 'Ada');"
                )
            },
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while (
            True
        ):  # the pull query scans the topic: the row is there once the produce is acknowledged
            r = httpx.post(
                f"{url}/query-stream",
                timeout=30,
                headers={"Accept": "application/json"},
                json={"sql": "SELECT * FROM users WHERE id = 'u1';"},
            )
            assert r.status_code == 200, r.text
            if r.json()[1:] == [["u1", "Ada"]]:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        info = httpx.get(f"{url}/info", timeout=5).json()["KsqlServerInfo"]
        assert info["serverStatus"] == "RUNNING"
    finally:
        assert proc.terminate() == 0
    log = proc.log_path.read_text()
    assert f"SQL server on http://127.0.0.1:{port}" in log
    assert (
        f"--state-dir {tmp_path / 'data'}/sql-state" in log
    )  # the queries' state lives with the broker's data
    deadline = time.monotonic() + 10
    while True:  # the child went with the broker: the port is free again
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        assert time.monotonic() < deadline, "the SQL server outlived the broker"
        time.sleep(0.1)
    assert "SQL server stopped (exit code 0)" in log, log[
        -3000:
    ]  # SIGTERM: a clean stop, not a kill
    assert "Traceback" not in log, log[-3000:]
