"""The Services page's pure parts and its rendering of hostile status records (a snapshot set by
hand; no cluster is asked: the refresher is not started)."""

from __future__ import annotations

import json
import time

from starlette.testclient import TestClient

from riverbed.client import ClusterSettings
from riverbed.client.status import parse_entry
from riverbed.console.app import Console, ConsoleConfig, _figures, _fmt_age
from riverbed.console.cluster import Snapshot


def test_figures_are_short_text() -> None:
    assert _figures({"lag": 0, "paused": False, "lag_bytes": None}) == [("lag", "0"), ("paused", "False"), ("lag_bytes", "-")]
    assert _figures({"restoring": {"s/0_0": [1, 2]}}) == [("restoring", "s/0_0: [1, 2]")]
    long = _figures({"statement": "x" * 500})[0][1]
    assert len(long) == 120 and long.endswith("…")
    many = _figures({f"f{i}": i for i in range(20)})
    assert len(many) == 13 and many[-1] == ("…", "8 more")


def test_ages() -> None:
    assert (_fmt_age(5), _fmt_age(600), _fmt_age(7200)) == ("5 s", "10 min", "2.0 h")


def status(name: str, **over: object) -> bytes:
    now = int(time.time() * 1000)
    v = {"kind": "streams", "name": name, "instance": "h:1", "host": "h", "state": "RUNNING", "started_at": now,
         "heartbeat_at": now, "interval_s": 10.0, "figures": {"note": "<b>bold</b>"}, "metrics_url": None}
    v.update(over)
    return json.dumps(v).encode()


def test_services_page_escapes_and_marks_stale() -> None:
    console = Console(ConsoleConfig(ClusterSettings("127.0.0.1:1"), refresh_s=60))
    now = time.time()
    entries = {
        "streams/<script>alert(1)</script>/h:1": parse_entry(b"a", status("<script>alert(1)</script>")),
        "streams/old/h:1": parse_entry(b"b", status("old", heartbeat_at=int((now - 60) * 1000))),
        "sql/Q1/h:1": parse_entry(b"c", status("Q1", kind="sql", metrics_url="http://127.0.0.1:8088/metrics")),
        "custom/x/h:1": parse_entry(b"d", status("x", kind="custom")),
    }
    console._view.snapshot = Snapshot(taken_at=now, services={k: v for k, v in entries.items() if v is not None})
    client = TestClient(console.app())
    html = client.get("/services").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count("stale-badge") == 1  # 60 s without a heartbeat at a 10 s interval
    assert 'href="http://127.0.0.1:8088/metrics"' in html
    assert "Other services" in html
    sql_only = client.get("/services?kind=sql").text
    assert 'id="services-sql"' in sql_only and 'id="services-streams"' not in sql_only
