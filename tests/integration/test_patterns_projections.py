"""CQRS projections on a real broker into real PostgreSQL and Redis servers: exactly once in
PostgreSQL across kill -9 of the projector process, idempotent by version in Redis, the
ordering defence, rebuild with an atomic switch, lag."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from riverbed.client import ClusterSettings, admin, ensure_topics
from riverbed.patterns.envelope import Envelope
from riverbed.patterns.projections import PostgresProjector, RedisProjector
from riverbed.testing import EmbeddedBroker
from riverbed.testing.servers import PostgresServer, RedisServer

from .patterns_domain import CounterDoc, CounterTable, types

pytestmark = pytest.mark.integration
PROC = str(Path(__file__).parent / "patterns_projector_proc.py")


@pytest.fixture(scope="module")
def settings() -> Iterator[ClusterSettings]:
    with EmbeddedBroker(group_initial_rebalance_delay_ms=0, accept_replication_factor=True) as broker:
        yield ClusterSettings(bootstrap=broker.bootstrap)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg")
    with PostgresServer() as server:
        yield server


def _events(settings: ClusterSettings, n: int, aggregates: int, partitions: int = 3, seed: int = 1) -> tuple[str, dict[str, int]]:
    """A topic with ``n`` counter events over ``aggregates`` ids (v1 events mixed in, which
    the projection reads upcast), and the expected total per id."""
    topic = f"proj-{uuid.uuid4().hex[:8]}"
    ensure_topics(admin(settings), {topic: (partitions, {})})
    p = Producer({"bootstrap.servers": settings.bootstrap, "linger.ms": 5})
    rnd = random.Random(seed)
    version: dict[str, int] = {}
    totals: dict[str, int] = {}
    for _ in range(n):
        agg = f"a{rnd.randrange(aggregates)}"
        version[agg] = version.get(agg, 0) + 1
        by = rnd.randrange(1, 10)
        totals[agg] = totals.get(agg, 0) + by
        env = Envelope("Incremented", 1, "counter", agg, version[agg], {"amount": by}) if rnd.random() < 0.2 else Envelope("Incremented", 2, "counter", agg, version[agg], {"by": by})
        p.produce(topic, key=agg.encode(), value=env.encode())
        if len(p) > 5000:
            p.poll(0.01)
    p.flush(30)
    return topic, totals


def _model(pg: PostgresServer, schema: str) -> dict[str, tuple[int, int]]:
    import psycopg

    with psycopg.connect(pg.dsn) as db:
        return {r[0]: (int(r[1]), int(r[2])) for r in db.execute(f"SELECT id, total, events FROM {schema}.counters").fetchall()}  # type: ignore[arg-type]


def _applied(pg: PostgresServer, schema: str) -> int:
    import psycopg

    with psycopg.connect(pg.dsn) as db:
        try:
            row = db.execute(f"SELECT coalesce(sum(events), 0) FROM {schema}.counters").fetchone()  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0


def test_postgres_projection_killed_9_equals_clean_pass(settings: ClusterSettings, pg: PostgresServer, tmp_path: Path) -> None:
    n = 5000
    log_path = tmp_path / "projector.log"
    topic, totals = _events(settings, n, 300)
    kills = 0
    for target in (n // 4, n // 2):  # two kill -9 at different points, mid-stream
        log = open(log_path, "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, PROC, settings.bootstrap, topic, pg.dsn, "killed"], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while _applied(pg, "killed") < target:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()
        proc.wait(10)
        log.close()
        kills += 1
    assert kills == 2 and _applied(pg, "killed") < n
    resumed = PostgresProjector(settings, [topic], pg.dsn, "killed", CounterTable(), types=types)
    resumed.run_until_caught_up(60)
    assert resumed.lag()["total"] == 0
    resumed.close()
    clean = PostgresProjector(settings, [topic], pg.dsn, "clean", CounterTable(), types=types)
    clean.run_until_caught_up(60)
    clean.close()
    model = _model(pg, "killed")
    assert model == _model(pg, "clean")
    assert {k: v[0] for k, v in model.items()} == totals
    assert sum(v[1] for v in model.values()) == n  # each event applied exactly once


def test_postgres_ordering_defence_and_rebuild(settings: ClusterSettings, pg: PostgresServer) -> None:
    topic, totals = _events(settings, 300, 10, partitions=1, seed=2)
    proj = PostgresProjector(settings, [topic], pg.dsn, "ordered", CounterTable(), types=types)
    proj.run_until_caught_up(30)
    # a redelivered old event (version 1 of a0) arrives after the newer ones: ignored
    p = Producer({"bootstrap.servers": settings.bootstrap})
    p.produce(topic, key=b"a0", value=Envelope("Incremented", 2, "counter", "a0", 1, {"by": 1000}).encode())
    p.flush(10)
    proj.run_until_caught_up(30)
    assert proj.ignored == 1
    assert {k: v[0] for k, v in _model(pg, "ordered").items()} == totals
    proj.rebuild(60)
    assert {k: v[0] for k, v in _model(pg, "ordered").items()} == totals
    assert proj.lag()["total"] == 0
    proj.close()


def test_redis_projection_idempotent_rebuild_and_lag(settings: ClusterSettings) -> None:
    pytest.importorskip("redis")
    topic, totals = _events(settings, 2000, 50, seed=3)
    with RedisServer() as server:
        proj = RedisProjector(settings, [topic], server.url, "counters", CounterDoc(), types=types)
        assert proj.lag()["total"] == 2000
        proj.run_until_caught_up(30)
        assert proj.lag()["total"] == 0
        docs: dict[str, Any] = {a: proj.get(a) for a in totals}
        assert {a: int(d["total"]) for a, d in docs.items()} == totals
        # the same events again (a producer retry, a replay): ignored by version
        p = Producer({"bootstrap.servers": settings.bootstrap})
        for a in list(totals)[:5]:
            p.produce(topic, key=a.encode(), value=Envelope("Incremented", 2, "counter", a, 1, {"by": 1000}).encode())
        p.flush(10)
        proj.run_until_caught_up(30)
        assert proj.ignored == 5
        assert {a: int((proj.get(a) or {})["total"]) for a in totals} == totals
        # a second projector on the same model (a restart) resumes at the stored offsets
        again = RedisProjector(settings, [topic], server.url, "counters", CounterDoc(), types=types)
        assert again.lag()["total"] == 0
        again.close()
        proj.rebuild(60)
        assert proj.generation == "g2"
        assert {a: int((proj.get(a) or {})["total"]) for a in totals} == totals
        proj.close()


def test_postgres_snapshot_store(pg: PostgresServer) -> None:
    from datetime import UTC, datetime

    from riverbed.patterns import PostgresSnapshotStore
    from riverbed.patterns.snapshots import make_snapshot

    store = PostgresSnapshotStore(pg.dsn)
    snap = make_snapshot("account", "acc", 20, 1, 99, 1, {"balance": 20000}, datetime(2025, 1, 1, tzinfo=UTC))
    assert store.get("account", "acc") is None
    store.put(snap)
    store.put(make_snapshot("account", "acc", 30, 1, 120, 1, {"balance": 1}, datetime(2025, 1, 2, tzinfo=UTC)))
    got = store.get("account", "acc")
    assert got is not None and (got.version, got.offset, got.state) == (30, 120, '{"balance":1}')
    store.delete("account", "acc")
    assert store.get("account", "acc") is None
    store.close()


def test_async_projector(settings: ClusterSettings) -> None:
    pytest.importorskip("redis")
    import asyncio

    from riverbed.patterns.aio import AsyncProjector

    topic, totals = _events(settings, 500, 20, seed=4)
    with RedisServer() as server:

        async def main() -> None:
            proj = AsyncProjector(RedisProjector(settings, [topic], server.url, "async", CounterDoc(), types=types))
            await proj.start()
            await proj.wait_caught_up(30)
            assert (await proj.lag())["total"] == 0
            assert {a: int((proj.projector.get(a) or {})["total"]) for a in totals} == totals
            await proj.close()

        asyncio.run(main())
