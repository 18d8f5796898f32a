"""One contract for both store engines, and the SQLite engine's commit/crash behaviour."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from riverbed.streams import LONG, STRING
from riverbed.streams.stores import Engine, MemoryEngine, SqliteEngine, WindowStore


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return MemoryEngine() if request.param == "memory" else SqliteEngine(tmp_path / "s.sqlite")


def test_get_put_delete_range(engine: Engine) -> None:
    for k in (b"b", b"a", b"c", b"ab"):
        engine.put(k, k.upper())
    assert engine.get(b"ab") == b"AB"
    assert [k for k, _ in engine.range(b"", None)] == [b"a", b"ab", b"b", b"c"]
    assert [k for k, _ in engine.range(b"ab", b"c")] == [b"ab", b"b"]
    engine.put(b"ab", None)
    engine.put(b"zz", None)  # deleting a missing key is fine
    assert engine.get(b"ab") is None
    assert engine.count() == 3


def test_put_many_applies_in_order(engine: Engine) -> None:
    engine.put_many([(b"k", b"1"), (b"k", None), (b"j", None), (b"j", b"2")])
    assert engine.get(b"k") is None and engine.get(b"j") == b"2"


def test_checkpoint_and_wipe(engine: Engine) -> None:
    assert engine.checkpoint() is None
    engine.put(b"k", b"v")
    engine.commit(42)
    assert engine.checkpoint() == 42
    engine.commit(None)  # nothing new in the changelog: the checkpoint stays
    assert engine.checkpoint() == 42
    engine.wipe()
    assert engine.checkpoint() is None and engine.get(b"k") is None


def test_window_store_orders_by_start_and_expires(engine: Engine) -> None:
    logged: list[tuple[bytes, bytes | None]] = []
    ws = WindowStore("w", engine, 10, STRING, LONG, lambda k, v: logged.append((k, v)))
    for start, key in [(20, "b"), (0, "a"), (10, "a"), (20, "a")]:
        ws.put_raw(ws.key_bytes(key), start, LONG.serialize(start))
    ws.put_meta("observed", 25)
    assert [(k, s) for k, s, _ in ws.all()] == [("a", 0), ("a", 10), ("a", 20), ("b", 20)]
    assert [(s, kb) for s, kb, _ in ws.starting_between(5, 20)] == [(10, b"a")]
    assert ws.expire_before(20) == 2
    assert [(k, s) for k, s, _ in ws.all()] == [("a", 20), ("b", 20)]
    assert ws.get_meta("observed") == 25 and ws.get("a", 20) == 20
    assert len(logged) == 7 and logged[-1][1] is None  # every write and expiry reaches the changelog


CRASHER = """
import os, sys
from pathlib import Path
from riverbed.streams.stores import SqliteEngine
e = SqliteEngine(Path(sys.argv[1]))
e.put(b"a", b"1")
e.commit(10)
e.put(b"a", b"2")
e.put(b"b", b"3")
os.kill(os.getpid(), 9)
"""


def test_sqlite_crash_keeps_the_last_commit_and_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    r = subprocess.run([sys.executable, "-c", CRASHER, str(path)], check=False)
    assert r.returncode == -9
    e = SqliteEngine(path)
    assert (e.get(b"a"), e.get(b"b"), e.checkpoint()) == (b"1", None, 10)
    e.close()


def test_sqlite_close_without_commit_drops_uncommitted(tmp_path: Path) -> None:
    mk: Callable[[], SqliteEngine] = lambda: SqliteEngine(tmp_path / "s.sqlite")  # noqa: E731
    e = mk()
    e.put(b"a", b"1")
    e.commit(1)
    e.put(b"a", b"2")
    e.close()
    e = mk()
    assert e.get(b"a") == b"1" and e.checkpoint() == 1
    e.close()
