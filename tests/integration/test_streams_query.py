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
