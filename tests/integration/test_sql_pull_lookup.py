"""Pull queries that pin the key (`k = x`, `k IN (...)`, every column of a multi-column key)
read those keys from the materializing query's store: key-value, window and session stores;
conditions on other columns and ranges over the key still filter (a scan)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse_one
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("sqlpull"), **FIXTURE_DEFAULTS).start()
    eng = Engine(
        ClusterSettings(broker.bootstrap),
        service_id=f"pl{uuid.uuid4().hex[:4]}_",
        state_dir=Path(tmp_path_factory.mktemp("sqlpull-state")),
        commit_interval_ms=200,
    ).start()
    eng.execute(
        "CREATE STREAM clicks (user_id STRING KEY, page STRING, n INT) WITH (kafka_topic='clicks', value_format='JSON', partitions=2);"
        "CREATE TABLE per_user AS SELECT user_id, COUNT(*) AS c, SUM(n) AS total FROM clicks GROUP BY user_id EMIT CHANGES;"
        "CREATE TABLE per_user_page WITH (key_format='JSON') AS SELECT user_id, page, COUNT(*) AS c FROM clicks "
        "GROUP BY user_id, page EMIT CHANGES;"
        "CREATE TABLE per_user_10s AS SELECT user_id, COUNT(*) AS c FROM clicks WINDOW TUMBLING (SIZE 10 SECONDS) "
        "GROUP BY user_id EMIT CHANGES;"
        "CREATE TABLE sessions AS SELECT user_id, COUNT(*) AS c FROM clicks WINDOW SESSION (5 SECONDS) "
        "GROUP BY user_id EMIT CHANGES;",
        {"auto.offset.reset": "earliest"},
    )
    rows = [
        ("a", "home", 1, 1000),
        ("a", "cart", 2, 2000),
        ("b", "home", 3, 3000),
        ("c", "home", 4, 4000),
        ("a", "home", 5, 12000),
        ("d", "cart", 6, 13000),
    ]
    eng.execute(
        "".join(
            f"INSERT INTO clicks (user_id, page, n, ROWTIME) VALUES ('{u}', '{p}', {n}, {t});"
            for u, p, n, t in rows
        )
    )
    yield eng
    eng.close()
    broker.stop()


def pull(engine: Engine, sql: str) -> list[list[Any]]:
    _cols, rows = engine.pull(parse_one(sql).query)  # type: ignore[attr-defined]
    return rows


def pull_until(
    engine: Engine, sql: str, want: Callable[[list[list[Any]]], bool], timeout: float = 30
) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    rows: list[list[Any]] = []
    while time.monotonic() < deadline:
        try:
            rows = pull(engine, sql)
        except SqlError as e:  # the query is still starting
            rows = [[str(e)]]
        if want(rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{sql}: {rows}")


def test_key_lookups_on_a_key_value_store(engine: Engine) -> None:
    pull_until(
        engine,
        "SELECT * FROM per_user;",
        lambda r: sorted(r) == [["a", 3, 8], ["b", 1, 3], ["c", 1, 4], ["d", 1, 6]],
    )
    assert pull(engine, "SELECT * FROM per_user WHERE user_id = 'a';") == [["a", 3, 8]]
    assert pull(engine, "SELECT user_id, c FROM per_user WHERE 'b' = user_id;") == [["b", 1]]
    assert pull(engine, "SELECT * FROM per_user WHERE user_id IN ('c', 'a', 'nobody', 'a');") == [
        ["a", 3, 8],
        ["c", 1, 4],
    ]
    assert pull(
        engine, "SELECT * FROM per_user WHERE user_id IN ('a', 'b', 'c') AND total > 3;"
    ) == [["a", 3, 8], ["c", 1, 4]]
    assert pull(engine, "SELECT * FROM per_user WHERE user_id = 'a' AND user_id IN ('b');") == []
    assert pull(engine, "SELECT * FROM per_user WHERE user_id = 'nobody';") == []
    # not a lookup: ranges and negations scan, and filter
    assert pull(engine, "SELECT user_id FROM per_user WHERE user_id > 'b';") == [["c"], ["d"]]
    assert pull(engine, "SELECT user_id FROM per_user WHERE user_id NOT IN ('a', 'b');") == [
        ["c"],
        ["d"],
    ]
    assert pull(engine, "SELECT user_id FROM per_user WHERE user_id = 'a' OR user_id = 'd';") == [
        ["a"],
        ["d"],
    ]


def test_multi_column_key_lookups(engine: Engine) -> None:
    pull_until(engine, "SELECT * FROM per_user_page;", lambda r: len(r) == 5)
    assert pull(engine, "SELECT * FROM per_user_page WHERE user_id = 'a' AND page = 'home';") == [
        ["a", "home", 2]
    ]
    assert pull(
        engine,
        "SELECT * FROM per_user_page WHERE user_id IN ('a', 'b') AND page IN ('home', 'cart');",
    ) == [["a", "cart", 1], ["a", "home", 2], ["b", "home", 1]]
    assert pull(engine, "SELECT * FROM per_user_page WHERE user_id = 'a';") == [
        ["a", "cart", 1],
        ["a", "home", 2],
    ]  # a scan


def test_key_lookups_on_window_and_session_stores(engine: Engine) -> None:
    pull_until(engine, "SELECT * FROM per_user_10s;", lambda r: len(r) == 5)
    assert pull(engine, "SELECT * FROM per_user_10s WHERE user_id = 'a';") == [
        ["a", 0, 10000, 2],
        ["a", 10000, 20000, 1],
    ]
    assert pull(
        engine, "SELECT user_id, windowstart, c FROM per_user_10s WHERE user_id IN ('d', 'b');"
    ) == [["b", 0, 1], ["d", 10000, 1]]
    assert pull(
        engine, "SELECT c FROM per_user_10s WHERE user_id = 'a' AND windowstart >= 10000;"
    ) == [[1]]
    pull_until(engine, "SELECT * FROM sessions;", lambda r: len(r) == 5)
    assert pull(engine, "SELECT * FROM sessions WHERE user_id = 'a';") == [
        ["a", 1000, 2000, 2],
        ["a", 12000, 12000, 1],
    ]
    assert pull(engine, "SELECT user_id, c FROM sessions WHERE user_id IN ('c', 'zz');") == [
        ["c", 1]
    ]
