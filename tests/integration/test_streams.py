"""riverbed.streams end to end: a real broker over TCP, confluent-kafka underneath.

Word count through a repartition topic and a persistent (SQLite) store with its changelog;
restart with the same state (checkpoint: nothing to replay) and with the state directory
deleted (restore from the changelog); windowed final results.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.streams import JSON, LONG, STRING, StreamsApp, StreamsError, TimeWindows
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

DEADLINE = 60.0


def wait_until(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def produce(bootstrap: str, topic: str, records: list[tuple[str | None, str, int]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    for key, value, ts in records:
        p.produce(topic, value.encode(), None if key is None else key.encode(), timestamp=ts)
    assert p.flush(30) == 0


class Reader:
    """Reads a topic from the beginning, accumulating what it has seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}-{time.monotonic_ns()}",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False,
                           "isolation.level": "read_committed"})
        self.c.subscribe([topic])
        self.records: list[tuple[bytes | None, bytes | None, int]] = []

    def poll(self) -> list[tuple[bytes | None, bytes | None, int]]:
        for m in self.c.consume(100, 0.2):
            if m.error() is None:
                self.records.append((m.key(), m.value(), m.timestamp()[1]))
        return self.records

    def close(self) -> None:
        self.c.close()


@contextmanager
def running(rt: Runtime) -> Iterator[Runtime]:
    errors: list[BaseException] = []

    def main() -> None:
        try:
            rt.run()
        except BaseException as e:  # surfaced in the test thread
            errors.append(e)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    try:
        yield rt
    except BaseException:
        if errors:  # the runtime's failure explains the test's
            raise errors[0] from None
        raise
    finally:
        rt.stop()
        t.join(60)
        assert not t.is_alive(), "runtime did not stop"
    if errors:
        raise errors[0]


def word_count(app_id: str) -> StreamsApp:
    app = StreamsApp(app_id)
    (app.stream("lines", STRING, STRING)
        .flat_map_values(str.split)
        .group_by(lambda _k, w: w, key_serde=STRING)
        .count(name="counts")
        .to_stream()
        .to("word-counts", STRING, LONG))
    return app


def latest(records: list[tuple[bytes | None, bytes | None, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v, _ts in records:
        assert k is not None
        out[k.decode()] = LONG.deserialize(v) or 0
    return out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_word_count_restarts_and_restores(riverbed_broker: EmbeddedBroker, tmp_path: Path, guarantee: str) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("lines", 2, 1), NewTopic("word-counts", 2, 1))
    produce(bs, "lines", [(None, "the cat sat on the mat", 1), ("k", "the dog", 2)])
    state = tmp_path / "state"
    topo = word_count("wc").topology()

    def runtime() -> Runtime:
        return Runtime(topo, bs, state_dir=state, commit_interval_ms=200, processing_guarantee=guarantee)

    out = Reader(bs, "word-counts")
    want = {"the": 3, "cat": 1, "sat": 1, "on": 1, "mat": 1, "dog": 1}
    with running(runtime()):
        wait_until(lambda: latest(out.poll()) == want, "first counts")
    # internal topics were created with the source's partition count; the changelog is compacted
    md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10)
    assert len(md.topics["wc-counts-repartition"].partitions) == 2
    assert len(md.topics["wc-counts-changelog"].partitions) == 2

    # restart on the same state directory: the checkpoint says nothing is left to replay
    produce(bs, "lines", [("k", "the end", 3)])
    with running(runtime()) as rt:
        wait_until(lambda: latest(out.poll()) == {**want, "the": 4, "end": 1}, "counts after restart")
        assert sum(rt.restored.values()) == 0, rt.restored

    # state directory deleted: the stores come back from the changelog, and the counts go on
    shutil.rmtree(state)
    produce(bs, "lines", [("k", "the cat", 4)])
    with running(runtime()) as rt:
        wait_until(lambda: latest(out.poll()) == {**want, "the": 5, "end": 1, "cat": 2}, "counts after restore")
        assert sum(rt.restored.values()) >= len(want) + 1, rt.restored
        # progress: every task's store reached the end of its changelog partition
        assert rt.restore_progress and all(done == total for done, total in rt.restore_progress.values()), rt.restore_progress
        assert sum(total for _d, total in rt.restore_progress.values()) >= sum(rt.restored.values())
    out.close()


def test_windowed_final_results_and_wall_clock_close(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """'user 123 looked at 5 dog-food pages in 60 seconds': final per-window counts. The record at
    119 s closes the first window; the second closes on the wall clock without a later record
    (idle 0.5 s, then stream time moves with the wall clock: it reaches 120 s about 1 s later)."""
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("page-views", 1, 1))
    app = StreamsApp("views")
    (app.stream("page-views", STRING, JSON)
        .filter(lambda _k, v: v["category"] == "dog-food")
        .group_by_key()
        .windowed_by(TimeWindows.of(60_000), emit="on_window_close", close_after_idle=500)
        .count(name="views")
        .to_stream()
        .map(lambda wk, n: (f"{wk.key}@{wk.window.start}", n))
        .to("dog-food-views", STRING, LONG))
    base = 1_700_000_040_000  # a multiple of 60 s
    views = [("123", {"category": "dog-food"}, base + i * 10_000) for i in range(5)]
    views += [("123", {"category": "cat-food"}, base + 1), ("7", {"category": "dog-food"}, base + 119_000)]
    p = Producer({"bootstrap.servers": bs})
    for k, v, ts in views:
        p.produce("page-views", JSON.serialize(v), k.encode(), timestamp=ts)
    assert p.flush(30) == 0
    out = Reader(bs, "dog-food-views")
    rt = Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200, punctuate_interval_ms=100)
    with running(rt):
        wait_until(lambda: len(out.poll()) >= 2, "both windows")
    got = {k.decode(): LONG.deserialize(v) for k, v, _ in out.poll() if k is not None}
    assert got == {f"123@{base}": 5, f"7@{base + 60_000}": 1}
    assert len(out.records) == 2  # final results: one per window
    out.close()


def test_missing_source_topic_is_a_clear_error(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    app = StreamsApp("nope")
    app.stream("no-such-topic", STRING, STRING).to("x")
    rt = Runtime(app.topology(), riverbed_broker.bootstrap, state_dir=tmp_path)
    with pytest.raises(StreamsError, match="no-such-topic"):
        rt.run()


def test_app_run_and_stop(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The one-line API: StreamsApp(...).run() in a thread, stop() from another."""
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("in", 1, 1))
    produce(bs, "in", [("a", "hello", 1)])
    app = StreamsApp("upper", bs, state_dir=str(tmp_path), commit_interval_ms=200)
    app.stream("in", STRING, STRING).map_values(str.upper).to("out")
    errors: list[Any] = []
    t = threading.Thread(target=lambda: errors.append(app.run()), daemon=True)
    t.start()
    out = Reader(bs, "out")
    wait_until(lambda: [(k, v) for k, v, _ in out.poll()] == [(b"a", b"HELLO")], "output")
    app.stop()
    t.join(60)
    assert not t.is_alive() and errors == [None]
    out.close()


def test_session_windows_survive_a_restore(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A session store (and its time index) restored from the changelog after the state
    directory is deleted: a record after the restart still extends the session."""
    from riverbed.streams import SessionWindows

    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("clicks", 1, 1), NewTopic("sessions", 1, 1))
    app = StreamsApp("sess")
    (app.stream("clicks", STRING, STRING)
        .group_by_key()
        .windowed_by(SessionWindows.with_inactivity_gap(10_000))
        .count(name="sessions")
        .to_stream()
        .filter(lambda _k, n: n is not None)
        .map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n))
        .to("sessions", STRING, LONG))
    topo = app.topology()
    state = tmp_path / "state"
    out = Reader(bs, "sessions")
    produce(bs, "clicks", [("u", "a", 1_000), ("u", "b", 5_000), ("v", "c", 6_000)])
    with running(Runtime(topo, bs, state_dir=state, commit_interval_ms=200)):
        wait_until(lambda: latest(out.poll()).get("u@1000-5000") == 2 and "v@6000-6000" in latest(out.records),
                   "sessions before restart")
    shutil.rmtree(state)
    produce(bs, "clicks", [("u", "d", 12_000)])
    with running(Runtime(topo, bs, state_dir=state, commit_interval_ms=200)) as rt:
        wait_until(lambda: latest(out.poll()).get("u@1000-12000") == 3, "the restored session extended")
        assert sum(rt.restored.values()) > 0
    out.close()


def test_stream_table_join(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("users", 2, 1, config={"cleanup.policy": "compact"}), NewTopic("clicks", 2, 1),
                  NewTopic("enriched", 2, 1))
    app = StreamsApp("join")
    users = app.table("users", STRING, JSON, name="users")
    (app.stream("clicks", STRING, STRING)
        .left_join(users, lambda page, user: f"{page}:{user['name'] if user else '-'}", value_serde=STRING)
        .to("enriched", STRING, STRING))
    p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random"})  # the Java clients' partitioning
    for uid, name in [("u1", "ann"), ("u2", "bob"), ("u3", "cy")]:
        p.produce("users", JSON.serialize({"name": name}), uid.encode())
    assert p.flush(30) == 0
    changelog = Reader(bs, "join-users-changelog")
    out = Reader(bs, "enriched")
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200)):
        wait_until(lambda: len(changelog.poll()) == 3, "the table loaded")
        for uid, page in [("u1", "home"), ("u2", "cart"), ("u9", "exit")]:
            p.produce("clicks", page.encode(), uid.encode())
        assert p.flush(30) == 0
        wait_until(lambda: len(out.poll()) == 3, "joined clicks")
    got = sorted((k.decode(), v.decode()) for k, v, _ in out.records if k is not None and v is not None)
    assert got == [("u1", "home:ann"), ("u2", "cart:bob"), ("u9", "exit:-")]
    changelog.close()
    out.close()


def test_dead_letter_topic_over_the_wire(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("raw", 1, 1), NewTopic("dlq", 1, 1))
    app = StreamsApp("dl", dead_letter_topic="dlq")
    app.stream("raw", STRING, JSON, on_error="dead_letter").to("parsed")
    produce(bs, "raw", [("a", "{oops", 5), ("b", '{"ok": true}', 6)])
    c = Consumer({"bootstrap.servers": bs, "group.id": "dlq-reader", "auto.offset.reset": "earliest"})
    c.subscribe(["dlq"])
    got: list[Any] = []
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200)):
        wait_until(lambda: got.extend(m for m in c.consume(10, 0.2) if m.error() is None) or len(got) >= 1, "dead letter")
    c.close()
    [m] = got
    h = dict(m.headers())
    assert (m.key(), m.value(), m.timestamp()[1]) == (b"a", b"{oops", 5)
    assert h["__streams.errors.topic"] == b"raw" and h["__streams.errors.offset"] == b"0"
    assert h["__streams.errors.exception"].startswith(b"json.decoder.JSONDecodeError")


def test_processor_api_over_the_wire(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A processor with a store and wall-clock punctuation, run by the runtime."""
    from riverbed.streams import Processor, ProcessorContext, Record

    class Totals(Processor):
        def init(self, ctx: ProcessorContext) -> None:
            self.ctx, self.store = ctx, ctx.get_store("totals")
            ctx.schedule(200, "wall_clock", self.emit)

        def process(self, record: Record) -> None:
            self.store.put(record.key, (self.store.get(record.key) or 0) + int(record.value))

        def emit(self, _now: int) -> None:
            for k, v in self.store.all():
                self.ctx.forward(k, v)

    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("amounts", 1, 1))
    app = StreamsApp("proc")
    app.add_state_store("totals", STRING, LONG)
    app.stream("amounts", STRING, STRING).process(Totals, stores=["totals"]).to("totals-out", STRING, LONG)
    produce(bs, "amounts", [("a", "5", 1), ("a", "7", 2), ("b", "1", 3)])
    out = Reader(bs, "totals-out")
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200, punctuate_interval_ms=50)):
        wait_until(lambda: latest(out.poll()) == {"a": 12, "b": 1}, "punctuated totals")
    out.close()


def test_table_table_outer_join(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("names", 1, 1), NewTopic("scores", 1, 1))
    app = StreamsApp("ttj")
    names = app.table("names", STRING, STRING, name="names")
    scores = app.table("scores", STRING, STRING, name="scores")
    names.outer_join(scores, lambda n, s: f"{n or '-'}:{s or '-'}").to_stream().to("name-scores", STRING, STRING)
    out = Reader(bs, "name-scores")
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200)):
        produce(bs, "names", [("u1", "ann", 1)])
        wait_until(lambda: len(out.poll()) == 1, "the left side alone")
        produce(bs, "scores", [("u1", "10", 2), ("u2", "5", 3)])
        wait_until(lambda: len(out.poll()) == 3, "both sides")
    assert [(k.decode(), v.decode()) for k, v, _ in out.records if k and v] == [("u1", "ann:-"), ("u1", "ann:10"), ("u2", "-:5")]
    out.close()


def test_stream_stream_outer_join(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    from riverbed.streams import JoinWindows

    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("orders", 1, 1), NewTopic("payments", 1, 1))
    app = StreamsApp("ssj")
    orders = app.stream("orders", STRING, STRING)
    payments = app.stream("payments", STRING, STRING)
    orders.outer_join(payments, lambda o, p: f"{o or '-'}/{p or '-'}", JoinWindows.of(10_000), name="pay",
                      value_serde=STRING).to("matched", STRING, STRING)
    produce(bs, "orders", [("o1", "order1", 1_000), ("o2", "order2", 2_000)])
    produce(bs, "payments", [("o1", "paid1", 5_000), ("o3", "paid3", 6_000)])
    out = Reader(bs, "matched")
    buffered = [Reader(bs, f"ssj-pay-{side}-buffer-changelog") for side in ("left", "right")]
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200)):
        # both topics are two partitions of one task, consumed in no fixed order: move stream
        # time on only once all four records are in the join buffers
        wait_until(lambda: all(len({k for k, _v, _t in b.poll()}) >= 2 for b in buffered), "records buffered")
        produce(bs, "orders", [("o9", "clock", 60_000)])
        wait_until(lambda: len(out.poll()) >= 3, "joined and unmatched records")
    got = sorted((k.decode(), v.decode()) for k, v, _ in out.records if k and v)
    assert got == [("o1", "order1/paid1"), ("o2", "order2/-"), ("o3", "-/paid3")]
    for r in [out, *buffered]:
        r.close()
