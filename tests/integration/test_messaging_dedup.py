"""Idempotent consumers through a real broker: duplicated events (a producer that resent
them) handled once, with the dedup store in Redis (its own redis-server on a free port) or
SQLite, under the DLQ policy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.messaging import CloudEvent, to_binary
from riverbed.messaging.deadletter import DeadLetterConsumer, RetryPolicy, create_topics
from riverbed.messaging.dedup import PostgresStore, RedisStore, SQLiteStore, idempotent
from riverbed.testing import EmbeddedBroker
from riverbed.testing.servers import PostgresServer, RedisServer

from .messaging_helpers import consumer, producer, read_topic, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    with RedisServer() as server:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        yield client
        client.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_conn(pg_server: PostgresServer) -> Iterator[Any]:
    """A connection to a private PostgreSQL server (initdb in a temp dir, a free port)."""
    import psycopg

    conn = psycopg.connect(pg_server.dsn, autocommit=True)
    yield conn
    conn.close()


def _orders_with_duplicates(bootstrap: str, topic: str) -> list[str]:
    events = [
        CloudEvent(
            type="eu.company.domain.order.created.v1", source="/shop", data={"orderId": f"A{i}"}
        )
        for i in range(10)
    ]
    p = producer(bootstrap)
    for event in events + events[:4] + events[2:3]:  # 4 resent once, one twice
        key, value, headers = to_binary(event)
        p.produce(topic, value=value, key=key, headers=headers)
    assert p.flush(30) == 0
    return [e.id for e in events]


@pytest.mark.parametrize("backend", ["redis", "redis-deferred", "sqlite", "postgres"])
def test_duplicates_are_dropped_and_failures_retried(
    backend: str, riverbed_broker: EmbeddedBroker, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"ecommerce-orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=3, retry_delays=())
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    ids = _orders_with_duplicates(bootstrap, topic)
    if backend.startswith("redis"):
        store: Any = RedisStore(
            request.getfixturevalue("redis_client"),
            window=3600,
            prefix=f"{topic}:",
            deferred_marks=backend == "redis-deferred",
        )
    elif backend == "postgres":
        conn = request.getfixturevalue("pg_conn")
        table = f"dedup_{uuid.uuid4().hex[:8]}"
        request.addfinalizer(lambda: conn.execute(f"DROP TABLE IF EXISTS {table}"))
        store = PostgresStore(conn, window=3600, table=table)
    else:
        store = SQLiteStore(str(tmp_path / "dedup.db"), window=3600)

    sent: list[str] = []
    flaky = {ids[5]}  # the mail server refuses this one once

    def send_email(msg: Any) -> None:
        eid = dict(msg.headers())["ce_id"].decode()
        if eid in flaky:
            flaky.discard(eid)
            raise ConnectionError("smtp busy")
        sent.append(eid)

    c = consumer(bootstrap)
    dlc = DeadLetterConsumer(c, producer(bootstrap), idempotent(send_email, store), policy)
    dlc.subscribe([topic])
    try:
        wait_until(
            lambda: (
                len(sent) >= 10 and c.position(c.assignment())[0].offset == 15
                if c.assignment()
                else False
            ),
            "all 15 records consumed",
            step=lambda: dlc.poll(0.2),
        )
    finally:
        c.close()
    assert sorted(sent) == sorted(ids)  # each event once; the flaky one retried, not dropped


def test_postgres_mark_and_work_commit_together(pg_conn: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    marks, emails = f"dedup_{suffix}", f"emails_{suffix}"
    pg_conn.execute(f"CREATE TABLE {emails} (order_id TEXT)")
    try:
        clock = [1000.0]
        store = PostgresStore(pg_conn, window=60, table=marks, clock=lambda: clock[0])

        def send(order: str, fail: bool = False) -> None:
            with store.once(f"evt-{order}") as tx:
                if tx is None:
                    return
                tx.execute(f"INSERT INTO {emails} VALUES (%s)", (order,))
                if fail:
                    raise RuntimeError("smtp down")

        with pytest.raises(RuntimeError):
            send("A1", fail=True)
        assert pg_conn.execute(f"SELECT count(*) FROM {emails}").fetchone() == (
            0,
        )  # both rolled back
        assert not store.seen("evt-A1")
        send("A1")
        send("A1")  # duplicate
        assert pg_conn.execute(f"SELECT order_id FROM {emails}").fetchall() == [("A1",)]
        assert store.seen("evt-A1") and not store.claim("evt-A1")
        clock[0] += 61  # the window passed: the id is new again
        assert not store.seen("evt-A1") and store.claim("evt-A1")
        with pytest.raises(ValueError, match="autocommit"):
            PostgresStore(type("C", (), {"autocommit": False})())
    finally:
        pg_conn.execute(f"DROP TABLE IF EXISTS {marks}")
        pg_conn.execute(f"DROP TABLE IF EXISTS {emails}")


def test_version_guard_parks_an_early_version_in_the_retry_topics(
    riverbed_broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Version 3 arrives while the store is at 1: parked through the retry topics; version 2 is
    applied, then 3 on its retry; a stale repeat of 2 is dropped with a log line."""
    import logging

    from confluent_kafka.admin import AdminClient

    from riverbed.messaging.dedup import OutOfOrder, version_guard

    bootstrap = riverbed_broker.bootstrap
    topic = f"customers-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=1, retry_delays=(0.5, 0.5, 0.5), non_retryable=())
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    p = producer(bootstrap)
    for version in (3, 2, 2):
        p.produce(topic, key=b"customer-7", value=str(version).encode())
    assert p.flush(30) == 0
    store = {"customer-7": 1}
    applied: list[int] = []

    def apply(msg: Any) -> None:
        applied.append(int(msg.value()))
        store["customer-7"] = int(msg.value())

    guarded = version_guard(
        apply, lambda m: (m.key().decode(), int(m.value())), lambda entity: store[entity]
    )
    c = consumer(bootstrap)
    dlc = DeadLetterConsumer(c, p, guarded, policy)
    dlc.subscribe([topic])
    try:
        with caplog.at_level(logging.INFO, logger="riverbed.messaging.dedup"):
            wait_until(
                lambda: applied == [2, 3], "versions 2 then 3 applied", step=lambda: dlc.poll(0.1)
            )
    finally:
        c.close()
    assert store == {"customer-7": 3}
    assert "dropped stale event for customer-7: version 2, store at 2" in caplog.text
    assert OutOfOrder.__name__ in caplog.text  # the deadletter log line of the parked version 3


def test_deferred_redis_marks_travel_with_the_next_check(redis_client: Any) -> None:
    deferred = RedisStore(redis_client, window=60, prefix="d:", deferred_marks=True)
    direct = RedisStore(redis_client, window=60, prefix="d:")
    deferred.mark("a")
    assert not direct.seen("a")  # not sent yet
    assert deferred.seen("a")  # sent ahead of the check, in the same pipeline
    assert direct.seen("a")
    deferred.mark("b")
    deferred.flush()
    assert direct.seen("b")
    assert 0 < redis_client.pttl("d:b") <= 60_000


@pytest.mark.parametrize("deferred", [False, True])
def test_batches_with_one_round_trip_per_check_and_mark(
    deferred: bool, riverbed_broker: EmbeddedBroker, redis_client: Any
) -> None:
    """``poll_batch`` with a ``DedupFilter``: duplicates (across and within batches) committed
    without running the handler, a poison record dead-lettered and left unmarked, a flaky one
    retried in place; every offset committed at the end."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    from riverbed.messaging.dedup import DedupFilter

    bootstrap = riverbed_broker.bootstrap
    topic = f"ecommerce-orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=2, retry_delays=(), non_retryable=(KeyError,))
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    ids = _orders_with_duplicates(bootstrap, topic)  # 10 events, 15 records
    store = RedisStore(redis_client, window=3600, prefix=f"{topic}:", deferred_marks=deferred)
    poison, flaky = ids[3], {ids[5]}
    sent: list[str] = []

    def send_email(msg: Any) -> None:
        eid = dict(msg.headers())["ce_id"].decode()
        if eid == poison:
            raise KeyError("no address")
        if eid in flaky:
            flaky.discard(eid)
            raise ConnectionError("smtp busy")
        sent.append(eid)

    group = f"email-{uuid.uuid4().hex[:6]}"
    c = consumer(bootstrap, group)
    dlc = DeadLetterConsumer(
        c, producer(bootstrap), send_email, policy, group=group, commit_every=100
    )
    dedup = DedupFilter(store)
    dlc.subscribe([topic])
    processed = [0]
    try:
        wait_until(
            lambda: processed[0] >= 15,
            "all 15 records processed",
            step=lambda: processed.__setitem__(
                0, processed[0] + dlc.poll_batch(6, 0.2, dedup=dedup)
            ),
        )
        assert dlc.commit()
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()
    store.flush()
    assert sorted(sent) == sorted(i for i in ids if i != poison)  # each once
    assert dedup.dropped == 4  # 5 resent copies; the poison's copy ran the handler again (unmarked)
    assert committed == 15
    assert not store.seen(poison) and all(store.seen(i) for i in ids if i != poison)
    dead = read_topic(bootstrap, f"{topic}.DLQ", 2, timeout=30)
    assert len(dead) == 2 and all(dict(m.headers())["ce_id"].decode() == poison for m in dead)
