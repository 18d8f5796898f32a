"""Foreign-key table-table joins and global tables end to end: a real broker over TCP.

The foreign-key join runs the driver tests' table (tests/unit/streams/test_fk_join.py) step by
step, inner and left in one app, over tables with different partition counts (3 and 2: no
co-partitioning), the left one written with librdkafka's default partitioner (answers go back
to the left row's partition, whatever placed it). Then the state directory is deleted: the
subscription stores come back from their changelogs, so right-side updates still reach the
subscribed left rows. Global tables: two instances each hold every partition of the topic,
bootstrapped before the first stream record is processed and kept up to date while running; a
restart reads only what is new, unless the store file is gone.
Last, asymmetric join windows (JoinWindows#after) for a stream-stream join.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import urllib.request
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.streams import JSON, STRING, StreamsApp, StreamsError
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker, free_port

from .helpers import create_topics
from .test_streams import Reader, running, wait_until

pytestmark = pytest.mark.integration


def _steps() -> list[tuple[Any, ...]]:
    path = Path(__file__).parents[1] / "unit" / "streams" / "test_fk_join.py"
    spec = importlib.util.spec_from_file_location("streams_fk_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.STEPS)


STEPS = _steps()


def _fk_app() -> StreamsApp:
    app = StreamsApp("fkj")
    orders = app.table("orders", STRING, JSON, name="orders")
    products = app.table("products", STRING, JSON, name="products")

    def joiner(o: dict[str, Any], p: dict[str, Any] | None) -> str:
        return f"{o['qty']}x{p['name'] if p else '-'}"

    orders.join(products, lambda o: o["product"], joiner, name="inner", value_serde=STRING) \
        .to_stream().to("inner-out", STRING, STRING)
    orders.left_join(products, lambda o: o["product"], joiner, name="left", value_serde=STRING) \
        .to_stream().to("left-out", STRING, STRING)
    return app


def _by_key(records: list[tuple[bytes | None, bytes | None, int]]) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = defaultdict(list)
    for k, v, _ts in records:
        assert k is not None
        out[k.decode()].append(None if v is None else v.decode())
    return dict(out)


def test_fk_join_end_to_end_with_restore(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("orders", 3, 1), NewTopic("products", 2, 1),
                  NewTopic("inner-out", 1, 1), NewTopic("left-out", 1, 1))
    orders_p = Producer({"bootstrap.servers": bs})  # librdkafka's default (CRC32) partitioner
    products_p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random"})  # the Java clients'
    topo = _fk_app().topology()
    state = tmp_path / "state"

    def runtime() -> Runtime:
        # (short fetch waits: each step crosses two internal topics)
        return Runtime(topo, bs, state_dir=state, commit_interval_ms=100, consumer_config={"fetch.wait.max.ms": 20})

    outs = {"inner": Reader(bs, "inner-out"), "left": Reader(bs, "left-out")}
    want: dict[str, dict[str, list[str | None]]] = {"inner": defaultdict(list), "left": defaultdict(list)}
    with running(runtime()) as rt:
        for i, (topic, key, value, inner_out, left_out) in enumerate(STEPS):
            p = orders_p if topic == "orders" else products_p
            p.produce(topic, JSON.serialize(value), key.encode(), timestamp=1_000 + i)
            assert p.flush(30) == 0
            for k, v in inner_out:
                want["inner"][k].append(v)
            for k, v in left_out:
                want["left"][k].append(v)
            for how in ("inner", "left"):
                wait_until(lambda how=how: _by_key(outs[how].poll()) == want[how], f"step {i} ({how}): {topic} {key}")
            # the table has the new row before the next step (a later step must not overtake it)
            wait_until(lambda topic=topic, key=key, value=value: rt.scan(topic, key, by_key=True)
                       == ([] if value is None else [(key, value)]), f"step {i} stored")
    md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10)
    assert len(md.topics["fkj-inner-subscription-registration-topic"].partitions) == 2
    assert len(md.topics["fkj-inner-subscription-response-topic"].partitions) == 3
    assert len(md.topics["fkj-inner-subscription-store-changelog"].partitions) == 2

    # the state directory is lost: every store, the subscription stores too, is restored from
    # its changelog; a right-side update then reaches the left rows subscribed before
    shutil.rmtree(state)
    with running(runtime()) as rt:
        wait_until(lambda: rt.running.is_set() and len(rt.tasks) == 5, "tasks assigned")
        restored = defaultdict(int)
        for name, n in rt.restored.items():
            restored[name.split("/")[0]] += n
        assert restored["inner-subscription-store"] >= 1 and restored["left-subscription-store"] >= 1, rt.restored
        for topic, key, value in [("products", "p2", {"name": "ink4"}), ("products", "p1", {"name": "nib"})]:
            products_p.produce(topic, JSON.serialize(value), key.encode(), timestamp=2_000)
        assert products_p.flush(30) == 0
        for how in ("inner", "left"):
            want[how]["o2"].append("1xink4")
            want[how]["o3"].append("1xnib")
            wait_until(lambda how=how: _by_key(outs[how].poll()) == want[how], f"{how} join after the restore")
    for r in outs.values():
        r.close()


def test_global_table_end_to_end(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("catalog", 3, 1, config={"cleanup.policy": "compact"}),
                  NewTopic("purchases", 2, 1), NewTopic("priced", 2, 1))
    app = StreamsApp("gtj")
    catalog = app.global_table("catalog", STRING, JSON, name="catalog")
    (app.stream("purchases", STRING, JSON)
        .join(catalog, lambda _user, p: p["item"], lambda p, item: p["n"] * item["price"], value_serde=JSON)
        .to("priced", STRING, JSON))
    p = Producer({"bootstrap.servers": bs})
    items = {f"i{n}": {"price": n} for n in range(1, 31)}
    for k, v in items.items():
        p.produce("catalog", JSON.serialize(v), k.encode())
    # purchases are there before the app starts: the global table must be complete before
    # the first one is processed, or some would find no item (an inner join drops them)
    for n in range(1, 31):
        p.produce("purchases", JSON.serialize({"item": f"i{n}", "n": 2}), f"u{n % 4}".encode())
    assert p.flush(30) == 0
    out = Reader(bs, "priced")
    servers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    topo = app.topology()
    rts = [Runtime(topo, bs, state_dir=tmp_path / f"s{i}", commit_interval_ms=100, application_server=servers[i])
           for i in range(2)]
    with ExitStack() as stack:
        for rt in rts:
            stack.enter_context(running(rt))
        wait_until(lambda: len(out.poll()) == 30, "every purchase priced")
        assert sorted(JSON.deserialize(v) for _k, v, _ in out.records) == sorted(2 * n for n in range(1, 31))
        # each instance holds the whole global table (all three partitions), whatever it owns
        for rt in rts:
            wait_until(lambda rt=rt: rt.query("catalog", "i17") == {"price": 17}, "the global table on each instance")
            assert dict(rt.scan("catalog")) == items
        # kept up to date while running; queryable over HTTP on any instance
        p.produce("catalog", JSON.serialize({"price": 100}), b"i5")
        p.produce("catalog", None, b"i6")
        assert p.flush(30) == 0
        for rt in rts:
            wait_until(lambda rt=rt: rt.query("catalog", "i5") == {"price": 100} and rt.query("catalog", "i6") is None,
                       "global table updates")
        for server in servers:
            with urllib.request.urlopen(f"http://{server}/stores/catalog/i5", timeout=10) as resp:
                assert json.loads(resp.read())["value"] == {"price": 100}
        p.produce("purchases", JSON.serialize({"item": "i5", "n": 1}), b"u1")
        p.produce("purchases", JSON.serialize({"item": "i6", "n": 1}), b"u2")  # deleted: no match
        p.produce("purchases", JSON.serialize({"item": "i7", "n": 1}), b"u3")
        assert p.flush(30) == 0
        wait_until(lambda: len(out.poll()) == 32, "purchases after the updates")
        assert sorted(JSON.deserialize(v) for _k, v, _ in out.records[30:]) == [7, 100]
    out.close()
    final = {**items, "i5": {"price": 100}, "i8": {"price": 800}}
    del final["i6"]

    # a restart reads only what the topic got since (the store's offsets file)
    p.produce("catalog", JSON.serialize({"price": 800}), b"i8")
    assert p.flush(30) == 0
    with running(Runtime(topo, bs, state_dir=tmp_path / "s0", commit_interval_ms=100)) as rt:
        wait_until(lambda: rt.running.is_set(), "the restarted instance")
        assert rt.restored["catalog/global"] == 1
        assert dict(rt.scan("catalog")) == final
    # the store file is gone (the offsets file is not): the topic is read from the beginning
    for f in (tmp_path / "s0" / "gtj" / "global").glob("catalog.sqlite*"):
        f.unlink()
    with running(Runtime(topo, bs, state_dir=tmp_path / "s0", commit_interval_ms=100)) as rt:
        wait_until(lambda: rt.running.is_set(), "the instance without its store")
        assert rt.restored["catalog/global"] == 33
        assert dict(rt.scan("catalog")) == final


def test_asymmetric_stream_stream_join(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """JoinWindows.of(0, grace).after(10): an impression at t joins the clicks in [t, t + 10]
    (the driver's first asymmetric case, tests/unit/streams/test_stream_join.py); with
    this grace nothing is late or expired, so the order the two topics are read in does not
    matter."""
    from riverbed.streams import JoinWindows

    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("impressions", 1, 1), NewTopic("clicks", 1, 1))
    app = StreamsApp("asym")
    (app.stream("impressions", STRING, STRING)
        .join(app.stream("clicks", STRING, STRING), lambda a, b: f"{a}+{b}",
              windows=JoinWindows.of(0, grace=100).after(10), name="ic", value_serde=STRING)
        .to("impression-clicks", STRING, STRING))
    p = Producer({"bootstrap.servers": bs})
    for topic, value, ts in [("impressions", "a", 100), ("clicks", "x", 95), ("clicks", "y", 105), ("clicks", "z", 111),
                             ("impressions", "b", 112), ("clicks", "w", 115), ("impressions", "c", 90)]:
        p.produce(topic, value.encode(), b"k", timestamp=ts)
    assert p.flush(30) == 0
    out = Reader(bs, "impression-clicks")
    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=100)):
        wait_until(lambda: len(out.poll()) >= 3, "joined records")
    got = sorted((v.decode(), ts) for _k, v, ts in out.poll() if v is not None)
    assert got == [("a+y", 105), ("b+w", 115), ("c+x", 95)]
    out.close()


def test_fk_join_exactly_once(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Under exactly_once the subscriptions and answers travel in the app's transactions
    (read_committed on the way back): the results are the same, each emitted once."""
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("eos-orders", 2, 1), NewTopic("eos-products", 3, 1), NewTopic("eos-out", 1, 1))
    app = StreamsApp("fkeos")
    orders = app.table("eos-orders", STRING, JSON, name="eos-orders")
    products = app.table("eos-products", STRING, STRING, name="eos-products")
    orders.join(products, lambda o: o["product"], lambda o, p: f"{o['qty']}x{p}", name="op", value_serde=STRING) \
        .to_stream().to("eos-out", STRING, STRING)
    p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random"})
    for n in range(10):
        p.produce("eos-products", f"item{n}".encode(), f"p{n}".encode())
    for n in range(20):
        p.produce("eos-orders", JSON.serialize({"product": f"p{n % 10}", "qty": n}), f"o{n}".encode())
    assert p.flush(30) == 0
    out = Reader(bs, "eos-out")
    want = {f"o{n}": [f"{n}xitem{n % 10}"] for n in range(20)}

    def runtime() -> Runtime:
        return Runtime(app.topology(), bs, state_dir=tmp_path, processing_guarantee="exactly_once",
                       consumer_config={"fetch.wait.max.ms": 20})

    with running(runtime()) as rt:
        # the tables may be read in any order: answers come either from a subscription (the
        # product was there) or from the product update (the order subscribed first)
        wait_until(lambda: _by_key(out.poll()) == want, "every order joined once")
        wait_until(lambda: rt.scan("eos-products", "p3", by_key=True) == [("p3", "item3")], "p3 stored")
        p.produce("eos-products", b"gadget", b"p3")
        assert p.flush(30) == 0
        want["o3"].append("3xgadget")
        want["o13"].append("13xgadget")
        wait_until(lambda: _by_key(out.poll()) == want, "the product update re-emitted")
    # a restart on the same state directory re-emits nothing
    with running(runtime()) as rt:
        wait_until(lambda: rt.running.is_set() and len(rt.tasks) == 5, "restarted")
        p.produce("eos-orders", JSON.serialize({"product": "p3", "qty": 99}), b"o99")
        assert p.flush(30) == 0
        want["o99"] = ["99xgadget"]
        wait_until(lambda: _by_key(out.poll()) == want, "a new order after the restart")
    out.close()


def test_undecodable_global_record_stops_the_bootstrap(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("bad-catalog", 1, 1), NewTopic("bad-purchases", 1, 1))
    p = Producer({"bootstrap.servers": bs})
    p.produce("bad-catalog", b'{"price": 1}', b"i1")
    p.produce("bad-catalog", b"{oops", b"i2")
    assert p.flush(30) == 0
    app = StreamsApp("gtbad")
    catalog = app.global_table("bad-catalog", STRING, JSON, name="bad-catalog")
    app.stream("bad-purchases", STRING, JSON).join(catalog, lambda _k, v: v, lambda v, c: c).to("bad-out")
    rt = Runtime(app.topology(), bs, state_dir=tmp_path)
    with pytest.raises(StreamsError, match=r"bad-catalog: record bad-catalog-0@1 does not deserialize"):
        rt.run()
