"""Status records of services that report in: what a reader accepts, staleness."""

from __future__ import annotations

import json
import time

import pytest

from riverbed.client.status import MAX_VALUE_BYTES, Status, StatusReporter, parse_entry, status_key


def record(**over: object) -> bytes:
    now = int(time.time() * 1000)
    v = {"kind": "streams", "name": "wc", "instance": "h:1", "host": "h", "state": "RUNNING", "started_at": now - 5000,
         "heartbeat_at": now, "interval_s": 10.0, "figures": {"lag": 0}, "metrics_url": "http://127.0.0.1:9/metrics", "version": 1}
    v.update(over)
    return json.dumps(v).encode()


def test_parse_a_status_record() -> None:
    e = parse_entry(b"streams/wc/h:1", record())
    assert e is not None
    assert (e.kind, e.name, e.instance, e.state, e.figures, e.metrics_url) == ("streams", "wc", "h:1", "RUNNING", {"lag": 0}, "http://127.0.0.1:9/metrics")
    assert not e.stale()


def test_stale_after_three_intervals() -> None:
    now = int(time.time() * 1000)
    e = parse_entry(b"k", record(heartbeat_at=now - 31_000))
    assert e is not None and e.stale(3.0, now) and not e.stale(4.0, now)
    assert 30.9 < e.age_s(now) < 31.1


@pytest.mark.parametrize("value", [
    None,  # a tombstone
    b"not json",
    b"[1, 2]",
    json.dumps({"kind": "streams"}).encode(),  # no name / instance / heartbeat
    json.dumps({"kind": "x", "name": "y", "instance": "z", "heartbeat_at": "soon"}).encode(),
    b" " * (MAX_VALUE_BYTES + 1),
])
def test_what_is_not_a_status(value: bytes | None) -> None:
    assert parse_entry(b"k", value) is None


def test_unsafe_metrics_urls_and_odd_figures_are_dropped() -> None:
    e = parse_entry(b"k", record(metrics_url="javascript:alert(1)", figures=[1, 2]))
    assert e is not None and e.metrics_url is None and e.figures == {}


def test_reporter_keys_and_interval() -> None:
    assert status_key("connect", "pg", "h:1") == "connect/pg/h:1"
    with pytest.raises(ValueError):
        StatusReporter({"bootstrap.servers": "127.0.0.1:1"}, list, interval_s=0)
    r = StatusReporter({"bootstrap.servers": "127.0.0.1:1"}, lambda: [Status("sql", "Q1", "RUNNING")], instance="i")
    assert list(r._read()) == ["sql/Q1/i"]


def test_a_directory_forgets_old_and_keeps_at_most_max_entries() -> None:
    from riverbed.client.status import ServiceDirectory

    d = ServiceDirectory({"bootstrap.servers": "127.0.0.1:1"}, forget_s=3600, max_entries=3)
    now = int(time.time() * 1000)
    for i in range(5):
        e = parse_entry(f"k{i}".encode(), record(name=f"s{i}", heartbeat_at=now - i * 1000))
        assert e is not None
        d.entries[e.key] = e
    old = parse_entry(b"old", record(name="old", heartbeat_at=now - 7200_000))
    assert old is not None
    d.entries["old"] = old
    d._prune()
    assert sorted(d.entries) == ["k0", "k1", "k2"]  # the freshest heartbeats
