"""Several `riverbed sql serve` processes sharing one command topic (ksqlDB's cluster): a CREATE
on one runs on both, their consumers sharing the query's partitions; a TERMINATE on the other
stops it on both; commandSequenceNumber; concurrent conflicting statements resolved in the
command topic's order; pull queries answered for the other server's partitions; kill -9 of one
server: the other takes over; static membership (--instance-id): a restarted server gets its
partitions back without a rebalance."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from riverbed.testing import BrokerProcess, EmbeddedBroker, SqlServerProcess, free_port

pytestmark = pytest.mark.integration

KEYS = ["home", "cart", "shop", "help"]
SERVICE = "cluster_"


def wait_for(cond: Callable[[], Any], timeout: float, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or cond}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "data", extra=["--set", "group.initial.rebalance.delay.ms=0", "--set",
                                                 "transaction.abort.timed.out.transaction.cleanup.interval.ms=500"]).start()
    yield b
    b.kill()



def persistent_queries(server: SqlServerProcess) -> list[str]:
    r = server.ksql("SHOW QUERIES;")
    assert r.status_code == 200, r.text
    return sorted(q["id"] for q in r.json()[0]["queries"] if q["queryType"] == "PERSISTENT")


@pytest.fixture
def servers(broker: BrokerProcess, tmp_path: Path) -> Iterator[list[SqlServerProcess]]:
    started: list[SqlServerProcess] = []
    for i in (1, 2):
        started.append(SqlServerProcess(broker.bootstrap, tmp_path / f"state{i}", tmp_path / f"sql{i}.log", SERVICE).start())
    yield started
    for s in started:
        s.stop()


def produce(bootstrap: str, topic: str, batch: list[tuple[str, str]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "partitioner": "murmur2_random"})
    for user, page in batch:
        p.produce(topic, json.dumps({"page": page}).encode(), user.encode())
    assert p.flush(30) == 0


_admins: dict[str, AdminClient] = {}


def group_members(bootstrap: str, group: str) -> dict[str, set[tuple[str, int]]]:
    """client id -> assigned (topic, partition)s, of the group's members."""
    a = _admins.setdefault(bootstrap, AdminClient({"bootstrap.servers": bootstrap}))
    try:
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(10)
    except Exception:
        return {}
    return {str(m.client_id): {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} for m in desc.members}


def pull_counts(url: str, table: str) -> dict[str, int] | None:
    try:
        r = httpx.post(f"{url}/query-stream", json={"sql": f"SELECT page, n FROM {table};"},
                       headers={"Accept": "application/json"}, timeout=30)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    rows = r.json()[1:]
    out = {row[0]: row[1] for row in rows}
    assert len(out) == len(rows), f"a key answered twice: {rows}"
    return out


def sink_counts(bootstrap: str, topic: str, n: int, committed: bool = False) -> dict[str, list[int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                  **({"isolation.level": "read_committed"} if committed else {})})
    c.subscribe([topic])
    seen: dict[str, list[int]] = {}
    deadline = time.monotonic() + 30
    while sum(len(v) for v in seen.values()) < n and time.monotonic() < deadline:
        for m in c.consume(500, 0.2):
            if m.error() is None:
                seen.setdefault((m.key() or b"").decode(), []).append(json.loads(m.value() or b"null")["N"])
    time.sleep(0.5)  # anything beyond n (a duplicate) would show up now
    for m in c.consume(500, 0.5):
        if m.error() is None:
            seen.setdefault((m.key() or b"").decode(), []).append(json.loads(m.value() or b"null")["N"])
    c.close()
    return seen


def app_id(qid: str) -> str:
    return f"_confluent-ksql-{SERVICE}query_{qid}"


def create(server: SqlServerProcess, prefix: str, guarantee: str = "at_least_once") -> str:
    text = (f"CREATE STREAM {prefix}_clicks (user STRING KEY, page STRING) WITH (kafka_topic='{prefix}_clicks', "
            "value_format='JSON', partitions=2);"
            f"SET 'processing.guarantee' = '{guarantee}';"
            "SET 'ksql.streams.consumer.session.timeout.ms' = '6000';"
            "SET 'ksql.streams.consumer.heartbeat.interval.ms' = '1000';"
            "SET 'ksql.streams.producer.transaction.timeout.ms' = '3000';"
            f"CREATE TABLE {prefix}_views AS SELECT page, COUNT(*) AS n FROM {prefix}_clicks GROUP BY page EMIT CHANGES;")
    r = server.ksql(text)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body[-1]["commandSequenceNumber"] > body[0]["commandSequenceNumber"] >= 0
    return str(body[-1]["commandStatus"]["queryId"])


def batch_of(n: int, sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    b = [(f"u{uuid.uuid4().hex[:6]}", KEYS[(len(sent) + i) % len(KEYS)]) for i in range(n)]
    sent.extend(b)
    return b


def test_create_on_one_runs_on_both_and_terminate_on_the_other_stops_both(broker: BrokerProcess,
                                                                         servers: list[SqlServerProcess]) -> None:
    s1, s2 = servers
    qid = create(s1, "c1")
    # the other server ran it too: it is in its SHOW QUERIES, and the query's group has a member
    # from each server, each with some of the query's partitions (the source topic's and the
    # repartition topic's: 4)
    wait_for(lambda: persistent_queries(s2) == [qid], 30, "the query on server 2")
    members = wait_for(lambda: (m := group_members(broker.bootstrap, app_id(qid))) and len(m) == 2
                       and all(m.values()) and len(set().union(*m.values())) == 4 and m, 60, "two members")
    assert {cid.split("@", 1)[1] for cid in members} == {s1.url, s2.url}
    sent: list[tuple[str, str]] = []
    produce(broker.bootstrap, "c1_clicks", batch_of(200, sent))
    want = {k: sum(1 for _u, p in sent if p == k) for k in KEYS}
    # pull queries on either server answer for both servers' partitions (forwarded)
    wait_for(lambda: pull_counts(s1.url, "c1_views") == want, 60, f"counts {want} on server 1")
    assert pull_counts(s2.url, "c1_views") == want
    # key lookups, on each server: a key's partition is computed and asked of its owner (this
    # server, or the other one over HTTP); a wrong partition would answer no row
    for s in (s1, s2):
        for k in KEYS:
            r = httpx.post(f"{s.url}/query-stream", json={"sql": f"SELECT n FROM c1_views WHERE page = '{k}';"},
                           headers={"Accept": "application/json"}, timeout=30)
            assert r.json()[1:] == [[want[k]]], r.text
        r = httpx.post(f"{s.url}/query-stream", headers={"Accept": "application/json"}, timeout=30,
                       json={"sql": "SELECT page, n FROM c1_views WHERE page IN ('home', 'cart', 'shop', 'help');"})
        assert sorted(map(tuple, r.json()[1:])) == sorted(want.items()), r.text
    # the sink: each key's counts 1..n, each once (at-least-once, and nothing failed)
    assert sink_counts(broker.bootstrap, "C1_VIEWS", len(sent)) == {k: list(range(1, n + 1)) for k, n in want.items()}
    # TERMINATE on server 2 (after waiting for server 1's CREATE: commandSequenceNumber)
    r = s2.ksql(f"TERMINATE {qid};", commandSequenceNumber=int(qid.rsplit("_", 1)[1]))
    assert r.status_code == 200, r.text
    assert persistent_queries(s2) == []
    wait_for(lambda: persistent_queries(s1) == [], 30, "the query gone from server 1")
    wait_for(lambda: not group_members(broker.bootstrap, app_id(qid)), 30, "the group empty")
    # a DROP on server 1 is seen on server 2: the next statement there runs after it
    r = s1.ksql("DROP TABLE c1_views;")
    assert r.status_code == 200, r.text
    seq = r.json()[0]["commandSequenceNumber"]
    r = s2.ksql("SHOW TABLES;", commandSequenceNumber=seq)
    assert r.status_code == 200 and r.json()[0]["tables"] == [], r.text


def test_conflicting_statements_are_resolved_in_command_topic_order(servers: list[SqlServerProcess]) -> None:
    s1, s2 = servers
    r = s1.ksql("CREATE STREAM cf_src (id STRING KEY, v INT) WITH (kafka_topic='cf_src', value_format='JSON', partitions=1);")
    assert r.status_code == 200, r.text
    results: dict[str, httpx.Response] = {}
    go = threading.Barrier(2)

    def run(name: str, s: SqlServerProcess) -> None:
        go.wait()
        results[name] = s.ksql("CREATE STREAM cf_out AS SELECT * FROM cf_src EMIT CHANGES;")

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("1", s1), ("2", s2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 400], {n: r.text for n, r in results.items()}
    loser = next(r for r in results.values() if r.status_code == 400)
    assert "A stream with the same name already exists" in loser.json()["message"]
    winner = next(r for r in results.values() if r.status_code == 200)
    qid = winner.json()[0]["commandStatus"]["queryId"]
    # both servers agree: one query, the winner's
    assert persistent_queries(s1) == [qid]
    wait_for(lambda: persistent_queries(s2) == [qid], 30, "server 2's queries")
    # a wait for a command that never comes times out as ksqlDB's does
    r = httpx.post(f"{s1.url}/ksql", json={"ksql": "SHOW STREAMS;", "commandSequenceNumber": 10_000}, timeout=120)
    assert r.status_code == 503 and "Timed out while waiting for a previous command" in r.json()["message"], r.text


def test_kill_9_of_one_server_the_other_takes_over(broker: BrokerProcess, servers: list[SqlServerProcess]) -> None:
    s1, s2 = servers
    qid = create(s1, "k9", guarantee="exactly_once_v2")
    wait_for(lambda: (m := group_members(broker.bootstrap, app_id(qid))) and len(m) == 2 and all(m.values()), 60,
             "two members")
    sent: list[tuple[str, str]] = []
    produce(broker.bootstrap, "k9_clicks", batch_of(100, sent))
    want = {k: sum(1 for _u, p in sent if p == k) for k in KEYS}
    wait_for(lambda: pull_counts(s1.url, "k9_views") == want, 60, "the first counts")
    s2.kill()
    produce(broker.bootstrap, "k9_clicks", batch_of(100, sent))
    # server 1 takes server 2's partition (after the session timeout) and the counts are exact
    members = wait_for(lambda: (m := group_members(broker.bootstrap, app_id(qid))) and len(m) == 1
                       and len(next(iter(m.values()))) == 4 and m, 60, "server 1 owning every partition")
    assert next(iter(members)).endswith(s1.url)
    want = {k: sum(1 for _u, p in sent if p == k) for k in KEYS}
    wait_for(lambda: pull_counts(s1.url, "k9_views") == want, 90, f"counts {want} after the kill")
    assert sink_counts(broker.bootstrap, "K9_VIEWS", len(sent), committed=True) == \
        {k: list(range(1, n + 1)) for k, n in want.items()}


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


@pytest.mark.parametrize(("static", "restart", "join"), [(True, 2, False), (False, 2, False), (True, 1, True)])
def test_static_membership_restart_rejoins_without_a_rebalance(embedded: EmbeddedBroker, tmp_path: Path,
                                                              static: bool, restart: int, join: bool) -> None:
    """With --instance-id, a server killed and restarted within the session timeout (30 s here)
    gets its partitions back at once and the group's generation does not change, whether it was
    the group's leader (server 1, the first to join) or not; without it, the restarted server's
    consumer is a new member: the group rebalances (the control). ``join``: a stream-table join
    (its task reads two co-partitioned topics: eager assignment) instead of an aggregation
    (cooperative-sticky)."""
    bs = embedded.bootstrap
    s1 = SqlServerProcess(bs, tmp_path / "state1", tmp_path / "sql1.log", SERVICE, "a" if static else None).start()
    s2 = SqlServerProcess(bs, tmp_path / "state2", tmp_path / "sql2.log", SERVICE, "b" if static else None).start()
    try:
        r = s1.ksql("CREATE STREAM st_clicks (user STRING KEY, page STRING) WITH (kafka_topic='st_clicks', "
                    "value_format='JSON', partitions=2);"
                    # static: long enough to restart within it; the control: its wait is this timeout
                    f"SET 'ksql.streams.consumer.session.timeout.ms' = '{30000 if static else 10000}';" +
                    ("CREATE TABLE st_users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='st_users', "
                     "value_format='JSON', partitions=2);"
                     "CREATE STREAM st_named AS SELECT c.user, u.name FROM st_clicks c JOIN st_users u ON c.user = u.id "
                     "EMIT CHANGES;" if join else
                     "CREATE TABLE st_views AS SELECT page, COUNT(*) AS n FROM st_clicks GROUP BY page EMIT CHANGES;"))
        assert r.status_code == 200, r.text
        qid = r.json()[-1]["commandStatus"]["queryId"]
        group = app_id(qid)

        def snapshot() -> Any:
            return embedded.call(embedded.broker.groups.coordinator.group_snapshot, group)

        def owners() -> dict[str, set[tuple[str, int]]]:
            m = group_members(bs, group)
            return {cid.split("@", 1)[1]: p for cid, p in m.items()}

        before = wait_for(lambda: (o := owners()) and len(o) == 2 and all(o.values()) and o, 60, "partitions on both")
        first = snapshot()
        gen, old_ids = first.generation, {m.member_id for m in first.members}
        s1, s2 = (s2, s1) if restart == 1 else (s1, s2)  # s2: the one restarted
        s2.kill()
        s2.start()
        started = time.monotonic()

        def rejoined() -> bool:
            """The restarted server's consumer is in the group (a member id not seen before:
            a static member rejoining gets a new one too) and the dead one is gone."""
            snap = snapshot()
            return len(snap.members) == 2 and any(m.member_id not in old_ids for m in snap.members)

        if static:
            # at once, and without a rebalance: it takes the dead member's place and partitions
            wait_for(lambda: rejoined() and owners().get(s2.url) == before[s2.url], 20, "server 2 back in its place")
            assert time.monotonic() - started < 20
            assert snapshot().generation == gen
            assert owners() == before
        else:
            # the control: a new member, so the group rebalances (after the dead member's
            # session timeout, 10 s here, at the latest) and gives server 2 partitions again
            wait_for(lambda: rejoined() and snapshot().generation > gen and bool(owners().get(s2.url)), 90,
                     "a rebalance that takes server 2 back in")
    finally:
        s1.stop()
        s2.stop()


def _describe_groups_answered(metrics_port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "riverbed_requests_total" and s.labels.get("api") == "DescribeGroups":
                return float(s.value)
    return 0.0


def test_pull_queries_do_not_describe_the_group_each_time(tmp_path: Path) -> None:
    """A server that could forward pull queries (it has a REST URL) finds the other servers
    from its query's consumer group: that description is kept for a second (and until a
    rebalance), so a run of pull queries costs about one DescribeGroups request a second at the
    broker, not one per query."""
    metrics = free_port()
    with BrokerProcess(tmp_path / "data", extra=["--metrics-listen", f"127.0.0.1:{metrics}", "--set",
                                                 "group.initial.rebalance.delay.ms=0"]) as broker, \
            SqlServerProcess(broker.bootstrap, tmp_path / "state", tmp_path / "sql.log", SERVICE) as s:
        qid = create(s, "pc")
        sent: list[tuple[str, str]] = []
        produce(broker.bootstrap, "pc_clicks", batch_of(40, sent))
        want = {k: sum(1 for _u, p in sent if p == k) for k in KEYS}
        wait_for(lambda: pull_counts(s.url, "pc_views") == want, 60, "the counts")
        assert group_members(broker.bootstrap, app_id(qid))
        before, started = _describe_groups_answered(metrics), time.monotonic()
        with httpx.Client(timeout=30) as http:
            for i in range(60):
                k = KEYS[i % len(KEYS)]
                r = http.post(f"{s.url}/query-stream", json={"sql": f"SELECT n FROM pc_views WHERE page = '{k}';"})
                assert r.status_code == 200 and json.loads(r.text.splitlines()[1]) == [want[k]], r.text
        elapsed = time.monotonic() - started
        asked = _describe_groups_answered(metrics) - before
        # one description per second of pulls at most (plus one for a second begun); the
        # test's own group_members() call above came before `before`
        assert asked <= elapsed + 2, f"{asked} DescribeGroups for 60 pull queries in {elapsed:.1f} s"
