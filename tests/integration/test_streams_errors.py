"""riverbed.streams against a real broker over TCP: production errors (a record the broker
refuses as too large, one the client refuses at once), dead letters for late records, a
changelog deleted underneath a store, and a table re-aggregated with subtractors."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.streams import LONG, STRING, StreamsApp, StreamsError, TimeWindows
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_streams import Reader, latest, produce, running, wait_until

pytestmark = pytest.mark.integration


def read_all(bs: str, topic: str, want: int, timeout: float = 30) -> list[Any]:
    c = Consumer({"bootstrap.servers": bs, "group.id": f"r-{topic}-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([topic])
    got: list[Any] = []
    try:
        wait_until(lambda: got.extend(m for m in c.consume(10, 0.2) if m.error() is None) or len(got) >= want,
                   f"{want} records on {topic}", timeout)
    finally:
        c.close()
    return got


def big_app(policy: str) -> StreamsApp:
    app = StreamsApp("big", production_error=policy, dead_letter_topic="big-dlq")
    app.stream("big-in", STRING, STRING).map_values(lambda v: v * 3).to("big-out")
    return app


# outputs are 3 times their input: the broker refuses those over 1,000 bytes on big-out, the
# client those over 20,000 (the dead-letter records, the input of "giant" and the output of
# "huge", pass)
SIZES = [("a", 10), ("huge", 500), ("b", 10), ("giant", 10_000), ("c", 10)]
# one record per request, so a refused record never takes small ones with it
PRODUCER = {"linger.ms": 0, "batch.num.messages": 1, "message.max.bytes": 20_000}


def setup_big(bs: str) -> None:
    create_topics(bs, NewTopic("big-in", 1, 1), NewTopic("big-out", 1, 1, config={"max.message.bytes": "1000"}),
                  NewTopic("big-dlq", 1, 1))
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    for k, n in SIZES:  # (the input topic takes them all: its limit is the default 1 MB)
        p.produce("big-in", b"x" * n, k.encode(), timestamp=1)
    assert p.flush(30) == 0


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
def test_production_errors_skipped_or_dead_lettered(riverbed_broker: EmbeddedBroker, tmp_path: Path, policy: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    bs = riverbed_broker.bootstrap
    setup_big(bs)
    rt = Runtime(big_app(policy).topology(), bs, state_dir=tmp_path, commit_interval_ms=200, producer_config=PRODUCER)
    with caplog.at_level(logging.WARNING, "riverbed.streams"), running(rt):
        out = read_all(bs, "big-out", 3)
        wait_until(lambda: rt.collector.production_errors == 1, "the broker's refusal counted")
        wait_until(lambda: sum(t.metrics.get("production_errors", 0) for t in rt.tasks.values()) == 1,
                   "the client's refusal counted")
        if policy == "dead_letter":
            dead = read_all(bs, "big-dlq", 2)
    assert [m.key() for m in out] == [b"a", b"b", b"c"]
    if policy == "skip":
        assert "producing a record to big-out failed, skipped" in caplog.text
        assert "production of an output record to big-out failed, skipped" in caplog.text
        return
    by_key = {m.key(): m for m in dead}
    assert set(by_key) == {b"huge", b"giant"}
    h = dict(by_key[b"huge"].headers())  # refused by the broker: the record as it was sent
    assert h["__streams.errors.topic"] == b"big-out" and h["__streams.errors.offset"] == b"-1"
    assert b"MSG_SIZE_TOO_LARGE" in h["__streams.errors.message"]
    assert len(by_key[b"huge"].value()) == 1_500  # the output record
    assert len(by_key[b"giant"].value()) == 10_000  # the input record
    h = dict(by_key[b"giant"].headers())  # refused by the client: the input record, with its position
    assert (h["__streams.errors.topic"], h["__streams.errors.offset"]) == (b"big-in", b"3")
    assert b"KafkaException" in h["__streams.errors.exception"]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_production_error_fails_by_default_and_under_exactly_once(riverbed_broker: EmbeddedBroker, tmp_path: Path,
                                                                  guarantee: str) -> None:
    """The default stops the app naming the topic and error. Under exactly-once a delivery the
    broker refused leaves the transaction unable to commit: the app stops whatever the policy."""
    bs = riverbed_broker.bootstrap
    setup_big(bs)
    policy = "fail" if guarantee == "at_least_once" else "skip"
    rt = Runtime(big_app(policy).topology(), bs, state_dir=tmp_path, commit_interval_ms=200, producer_config=PRODUCER,
                 processing_guarantee=guarantee)
    with pytest.raises(StreamsError, match=r"big-out.*(MSG_SIZE_TOO_LARGE|too large)"):
        rt.run()
    assert rt.stats.state == "ERROR"
    if guarantee == "exactly_once":  # the aborted transaction's records are not visible
        c = Consumer({"bootstrap.servers": bs, "group.id": "eos-check", "auto.offset.reset": "earliest",
                      "isolation.level": "read_committed"})
        c.subscribe(["big-out"])
        seen = [m for m in c.consume(10, 2.0) if m.error() is None]
        c.close()
        assert seen == []


def test_late_records_to_dead_letter_topic(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("clicks", 1, 1), NewTopic("clicks-dlq", 1, 1))
    app = StreamsApp("late", dead_letter_topic="clicks-dlq")
    (app.stream("clicks", STRING, STRING)
        .group_by_key(on_error="dead_letter")
        .windowed_by(TimeWindows.of(1_000))
        .count(name="per-second")
        .to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}", n)).to("per-second", STRING, LONG))
    produce(bs, "clicks", [("u", "a", 1_500), ("u", "b", 5_000), ("u", "late", 1_200), (None, "nokey", 5_001)])
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200)):
        dead = read_all(bs, "clicks-dlq", 2)
    assert [(m.key(), m.value()) for m in dead] == [(b"u", b"late"), (None, b"nokey")]
    h = dict(dead[0].headers())
    assert h["__streams.errors.offset"] == b"2" and b"late record" in h["__streams.errors.message"]


def count_app() -> StreamsApp:
    app = StreamsApp("lost")
    app.stream("events", STRING, STRING).group_by_key().count(name="n").to_stream().to("counts", STRING, LONG)
    return app


def test_changelog_deleted_underneath(riverbed_broker: EmbeddedBroker, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("events", 1, 1))
    produce(bs, "events", [("k", "1", 1), ("k", "2", 2), ("k", "3", 3)])
    topo = count_app().topology()
    out = Reader(bs, "counts")
    with running(Runtime(topo, bs, state_dir=tmp_path, commit_interval_ms=200)):
        wait_until(lambda: latest(out.poll()) == {"k": 3}, "counts")
    admin = AdminClient({"bootstrap.servers": bs})
    admin.delete_topics(["lost-n-changelog"])["lost-n-changelog"].result(10)
    wait_until(lambda: "lost-n-changelog" not in admin.list_topics(timeout=10).topics, "changelog deleted")

    # default: the task fails with a clear error instead of losing the state silently
    rt = Runtime(topo, bs, state_dir=tmp_path, commit_interval_ms=200)
    with pytest.raises(StreamsError, match=r"store n task 0_0: its checkpoint .* beyond the end of changelog "
                                           r"lost-n-changelog-0 \[0, 0\].*on_changelog_lost='reset'"):
        rt.run()
    # the state directory is untouched: the store still holds its count
    # reset: an ERROR line, the store wiped, counting starts again from what the changelog holds
    produce(bs, "events", [("k", "4", 4)])
    with caplog.at_level(logging.ERROR, "riverbed.streams"), \
            running(Runtime(topo, bs, state_dir=tmp_path, commit_interval_ms=200, on_changelog_lost="reset")):
        wait_until(lambda: out.poll()[-1][1] == LONG.serialize(1), "count restarted")
    assert any(r.levelno == logging.ERROR and "the state is lost" in r.getMessage() for r in caplog.records)
    out.close()
    with pytest.raises(StreamsError, match="on_changelog_lost"):
        Runtime(topo, bs, on_changelog_lost="ignore")


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_table_group_by_end_to_end(riverbed_broker: EmbeddedBroker, tmp_path: Path, guarantee: str) -> None:
    """Users moving between regions (the driver test's steps) over 2 partitions: the final
    count per region is exact, and the groups' aggregates are queryable."""
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("users", 2, 1), NewTopic("region-counts", 2, 1))
    app = StreamsApp("regions")
    (app.table("users", STRING, STRING, name="users")
        .group_by(lambda user, region: (region, user), key_serde=STRING)
        .count(name="users-per-region")
        .to_stream().to("region-counts", STRING, LONG))
    steps = [("alice", "eu"), ("bob", "eu"), ("carol", "us"), ("alice", "us"), ("bob", "eu"), ("carol", None),
             ("dave", None), ("bob", None), ("erin", "asia"), ("erin", "us")]
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0, "partitioner": "murmur2_random"})
    for i, (user, region) in enumerate(steps):
        p.produce("users", None if region is None else region.encode(), user.encode(), timestamp=i + 1)
        p.flush(10)  # (in order per user)
    out = Reader(bs, "region-counts")
    rt = Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200, processing_guarantee=guarantee)
    want = {"eu": 0, "us": 2, "asia": 0}
    with running(rt):
        wait_until(lambda: latest(out.poll()) == want, "final counts per region")
        assert {r: rt.query("users-per-region", r) for r in want} == want
    md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10)
    assert len(md.topics["regions-users-per-region-repartition"].partitions) == 2
    out.close()


def test_output_topic_that_does_not_exist(riverbed_broker_factory: Any, tmp_path: Path) -> None:
    """Auto-creation off: deliveries to a missing output topic fail (UNKNOWN_TOPIC_OR_PART once
    the producer stops waiting for it) and go to the dead-letter topic; the app goes on."""
    broker = riverbed_broker_factory(auto_create_topics=False)
    bs = broker.bootstrap
    create_topics(bs, NewTopic("orders", 1, 1), NewTopic("orders-dlq", 1, 1), NewTopic("kept", 1, 1))
    app = StreamsApp("nowhere", production_error="dead_letter", dead_letter_topic="orders-dlq")
    src = app.stream("orders", STRING, STRING)
    src.to("no-such-topic")
    src.to("kept")
    produce(bs, "orders", [("a", "1", 1), ("b", "2", 2)])
    rt = Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200,
                 producer_config={"topic.metadata.propagation.max.ms": 500})
    with running(rt):
        dead = read_all(bs, "orders-dlq", 2)
        kept = read_all(bs, "kept", 2)
    assert sorted(m.key() for m in dead) == [b"a", b"b"] and len(kept) == 2
    h = dict(dead[0].headers())
    assert h["__streams.errors.topic"] == b"no-such-topic"
    assert b"UNKNOWN_TOPIC" in h["__streams.errors.message"]
    assert rt.collector.production_errors == 2
