"""Interactive queries: two instances of a word count share the partitions; each answers the
keys it owns from Python and over HTTP, and redirects the others' to their owner. The key's
partition is Kafka's murmur2 partition, checked against librdkafka's murmur2_random."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from riverbed.streams.query import NotLocalError, partition_for
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker, free_port

from .helpers import create_topics
from .test_streams import Reader, latest, produce, wait_until, word_count

pytestmark = pytest.mark.integration


def test_partition_for_matches_librdkafka_murmur2(riverbed_broker: EmbeddedBroker) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("spread", 7, 1))
    keys = [f"key-{i}".encode() for i in range(60)] + [b"", b"a", b"ab", b"abc", "ünï".encode()]
    p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random"})
    placed: dict[bytes, int] = {}
    for k in keys:
        p.produce("spread", b"v", k, on_delivery=lambda err, msg: placed.__setitem__(msg.key(), msg.partition()))
    assert p.flush(30) == 0
    assert placed == {k: partition_for(k, 7) for k in keys}


def test_interactive_queries_two_instances(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("lines", 2, 1), NewTopic("word-counts", 2, 1))
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    produce(bs, "lines", [(None, " ".join(words), 1), (None, "alpha beta alpha", 2)])
    want = {w: 1 for w in words} | {"alpha": 3, "beta": 2}
    topo = word_count("wcq").topology()
    servers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    # eager range assignment puts partitions of both sub-topologies on each instance (cooperative-sticky
    # balances partition counts only, and may give one instance every counting task)
    rts = [Runtime(topo, bs, state_dir=tmp_path / f"s{i}", commit_interval_ms=200, application_server=servers[i],
                   rebalance_protocol="eager",
                   consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}) for i in range(2)]
    threads = [threading.Thread(target=rt.run, daemon=True) for rt in rts]
    for t in threads:
        t.start()
    out = Reader(bs, "word-counts")
    try:
        wait_until(lambda: latest(out.poll()) == want, "counts")
        # both instances hold tasks of the counting sub-topology
        wait_until(lambda: all(any(sid == 1 for sid, _p in rt.tasks) for rt in rts), "both instances own partitions")

        def ask(rt: Runtime, w: str) -> tuple[str, Any]:
            try:
                return "local", rt.query("counts", w)
            except NotLocalError as e:
                return "remote", e.owner

        for w, n in want.items():
            answers = [ask(rt, w) for rt in rts]
            local = [a for a in answers if a[0] == "local"]
            assert local == [("local", n)], (w, answers)
            remote = [a for a in answers if a[0] == "remote"]
            owner = servers[answers.index(local[0])]
            assert remote == [("remote", owner)], (w, answers)

        for w, n in want.items():  # over HTTP, always through the first instance
            with urllib.request.urlopen(f"http://{servers[0]}/stores/counts/{w}", timeout=10) as r:
                body = json.loads(r.read())
            assert (body["key"], body["value"]) == (w, n)
        with pytest.raises(urllib.error.HTTPError) as e404:  # no value (after a redirect if not local)
            urllib.request.urlopen(f"http://{servers[0]}/stores/counts/nowhere", timeout=10)
        e404.value.close()
        assert e404.value.code == 404
    finally:
        for rt in rts:
            rt.stop()
        for t in threads:
            t.join(60)
        out.close()
    assert not any(t.is_alive() for t in threads)


def _windows_app(app_id: str) -> Any:
    from riverbed.streams import STRING, SessionWindows, StreamsApp, TimeWindows

    app = StreamsApp(app_id)
    g = app.stream("clicks", STRING, STRING).group_by_key()
    g.count(name="counts")
    g.windowed_by(TimeWindows.of(1000), retention=3_600_000).count(name="wcounts")
    g.windowed_by(SessionWindows.with_inactivity_gap(500), retention=3_600_000).count(name="sessions")
    return app


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_window_session_and_range_queries_two_instances(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    from riverbed.streams import Window

    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("clicks", 2, 1))
    users = [f"user-{i}" for i in range(8)]
    # each user: clicks at 100 and 400 (one session, window [0, 1000)), then at 2500 (a new
    # session, window [2000, 3000)); user-0 once more at 2600
    recs = [(u, t) for t in (100, 400, 2500) for u in users] + [("user-0", 2600)]
    p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random"})  # as the query's partition_for
    for u, t in recs:
        p.produce("clicks", b"x", u.encode(), timestamp=t)
    assert p.flush(30) == 0
    want_windows = {u: [(Window(0, 1000), 2), (Window(2000, 3000), 2 if u == "user-0" else 1)] for u in users}
    want_sessions = {u: [(Window(100, 400), 2), (Window(2500, 2600 if u == "user-0" else 2500), 2 if u == "user-0" else 1)]
                     for u in users}
    want_counts = {u: 4 if u == "user-0" else 3 for u in users}
    topo = _windows_app("iqw").topology()
    servers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    # eager range assignment gives each instance one partition at once (cooperative-sticky may leave
    # both with the first instance for a while: "counts on both instances" then timed out in CI)
    rts = [Runtime(topo, bs, state_dir=tmp_path / f"s{i}", commit_interval_ms=200, application_server=servers[i],
                   rebalance_protocol="eager",
                   consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}) for i in range(2)]
    threads = [threading.Thread(target=rt.run, daemon=True) for rt in rts]
    for t in threads:
        t.start()
    try:
        def ranges() -> dict[str, int]:
            try:
                return {k: v for rt in rts for k, v in rt.query_all("counts")}
            except Exception:
                return {}

        wait_until(lambda: all(len(rt.tasks) == 1 for rt in rts) and ranges() == want_counts, "counts on both instances")

        def ask(rt: Runtime, fn: Any, u: str) -> tuple[str, Any]:
            try:
                return "local", fn(rt, u)
            except NotLocalError as e:
                return "remote", e.owner

        for u in users:
            for fn, want in [(lambda rt, k: rt.query_window("wcounts", k, 0, 10_000), want_windows[u]),
                             (lambda rt, k: rt.query_session("sessions", k), want_sessions[u])]:
                answers = [ask(rt, fn, u) for rt in rts]
                local = [a for a in answers if a[0] == "local"]
                assert local == [("local", want)], (u, answers)
                owner = servers[answers.index(local[0])]
                assert [a for a in answers if a[0] == "remote"] == [("remote", owner)], (u, answers)
            # a time range picks windows by start time
            owner_rt = next(rt for rt in rts if ask(rt, lambda r, k: r.query_window("wcounts", k), u)[0] == "local")
            assert owner_rt.query_window("wcounts", u, 1000, 2000) == want_windows[u][1:]
            # over HTTP through the first instance (redirected to the owner when not local)
            body = _get(f"http://{servers[0]}/stores/wcounts/{u}?from=0&to=1999")
            assert (body["key"], body["windows"]) == (u, [{"start": 0, "end": 1000, "value": 2}])
            assert body["host"] == owner
            body = _get(f"http://{servers[0]}/stores/sessions/{u}")
            assert [(s["start"], s["end"], s["value"]) for s in body["sessions"]] == [
                (w.start, w.end, n) for w, n in want_sessions[u]]

        # ranges cover only the asked instance's partitions; together, everything
        parts = [rt.local_partitions("counts") for rt in rts]
        assert sorted(parts[0] + parts[1]) == [0, 1]
        lists = [dict(rt.query_all("counts")) for rt in rts]
        assert not set(lists[0]) & set(lists[1])
        assert lists[0] | lists[1] == want_counts
        assert {k for rt in rts for k, _v in rt.query_range("counts", "user-2", "user-4")} == {"user-2", "user-3", "user-4"}
        fetched = sorted((wk.key, wk.window.start, n) for rt in rts for wk, n in rt.fetch_all("wcounts", 2000, 2000))
        assert fetched == sorted((u, 2000, want_windows[u][1][1]) for u in users)
        for i, server in enumerate(servers):  # over HTTP: each instance says which partitions it answered for
            body = _get(f"http://{server}/stores/counts?from=user-2&to=user-4")
            assert body["partitions"] == parts[i]
            assert {e["key"]: e["value"] for e in body["entries"]} == {
                u: n for u, n in lists[i].items() if "user-2" <= u <= "user-4"}
            body = _get(f"http://{server}/stores/wcounts?from=2000&to=2000")
            assert body["partitions"] == parts[i]
            assert {(e["key"], e["start"], e["end"], e["value"]) for e in body["entries"]} == {
                (u, 2000, 3000, want_windows[u][1][1]) for u in lists[i]}
        with pytest.raises(urllib.error.HTTPError) as bad:  # a time that is not one
            urllib.request.urlopen(f"http://{servers[0]}/stores/wcounts?from=soon", timeout=10)
        bad.value.close()
        assert bad.value.code == 400
    finally:
        for rt in rts:
            rt.stop()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
