"""Dedup stores and guards without a broker (the broker-facing test is
tests/integration/test_messaging_dedup.py)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from riverbed.messaging.dedup import MemoryStore, OutOfOrder, SQLiteStore, event_id, version_guard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Msg:
    """The read side of a confluent-kafka Message (topic, partition, offset, key, value, headers)."""

    def __init__(
        self, value: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        self._value, self._headers = value, headers

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


def test_memory_store_window_and_bound() -> None:
    clock = Clock()
    store = MemoryStore(max_entries=3, window=60, clock=clock)
    assert store.claim("a") and not store.claim("a")
    clock.now += 61
    assert store.claim("a")  # outside the window: new again
    for eid in "bcd":
        assert store.claim(eid)
    assert len(store) == 3  # bounded: "a" (oldest) evicted
    assert store.claim("a")
    store.release("a")
    assert store.claim("a")


def test_sqlite_mark_and_work_commit_together(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    conn.execute("CREATE TABLE emails (order_id TEXT)")
    store = SQLiteStore(conn, window=3600)

    def send(order: str, fail: bool = False) -> None:
        with store.once(f"evt-{order}") as tx:
            if tx is None:
                return
            tx.execute("INSERT INTO emails VALUES (?)", (order,))
            if fail:
                raise RuntimeError("smtp down")

    with pytest.raises(RuntimeError):
        send("A1", fail=True)
    assert conn.execute("SELECT count(*) FROM emails").fetchone() == (0,)  # work rolled back ...
    send("A1")  # ... and the mark too: the retry runs
    send("A1")  # the duplicate does not
    assert conn.execute("SELECT order_id FROM emails").fetchall() == [("A1",)]
    reopened = SQLiteStore(str(tmp_path / "app.db"))
    assert not reopened.claim("evt-A1")  # durable across restarts


def test_sqlite_window_expires_ids(tmp_path: Path) -> None:
    clock = Clock()
    store = SQLiteStore(str(tmp_path / "d.db"), window=60, clock=clock)
    assert store.claim("x") and not store.claim("x")
    clock.now += 61
    assert store.claim("x")
    with pytest.raises(ValueError, match="autocommit"):
        SQLiteStore(sqlite3.connect(tmp_path / "e.db"))


def test_event_id_from_either_content_mode() -> None:
    assert event_id(Msg(b"{}", [("ce_id", b"e-1")])) == "e-1"
    structured = b'{"specversion":"1.0","id":"e-2","source":"/s","type":"t"}'
    assert event_id(Msg(structured, [("content-type", b"application/cloudevents+json")])) == "e-2"
    assert event_id(Msg(b"plain", None)) is None
    assert event_id(Msg(b"{broken", [("content-type", b"application/cloudevents+json")])) is None
    assert event_id(Msg(b"x", [("ce_id", b"\xff")])) is None


def test_version_guard(caplog: pytest.LogCaptureFixture) -> None:
    versions = {"order-1": 1}
    handled: list[int] = []

    def apply(msg: Any) -> None:
        v = int(msg.value())
        handled.append(v)
        versions["order-1"] = v

    guarded = version_guard(apply, lambda m: ("order-1", int(m.value())), lambda e: versions[e])
    with pytest.raises(OutOfOrder):
        guarded(Msg(b"3"))  # ahead of the store: parked by the error policy
    guarded(Msg(b"2"))
    guarded(Msg(b"3"))  # its retry
    with caplog.at_level(logging.INFO, logger="riverbed.messaging.dedup"):
        guarded(Msg(b"2"))  # stale
    assert handled == [2, 3]
    assert "stale" in caplog.text


def test_idempotent_marks_only_after_the_handler_returned() -> None:
    from riverbed.messaging.dedup import idempotent

    store = MemoryStore()
    calls: list[str] = []

    def handler(msg: Any) -> None:
        calls.append("call")
        if len(calls) == 1:
            raise ConnectionError("smtp busy")

    run = idempotent(handler, store)
    msg = Msg(b"{}", [("ce_id", b"e-1")])
    with pytest.raises(ConnectionError):
        run(msg)
    assert not store.seen("e-1")  # a failed handler leaves no mark
    run(msg)
    run(msg)  # the duplicate
    assert calls == ["call", "call"]
    assert store.seen("e-1")


def test_event_id_of_a_deeply_nested_value_is_none() -> None:
    deep = b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert event_id(Msg(deep, [("content-type", b"application/cloudevents+json")])) is None


def test_dedup_filter_batches() -> None:
    from confluent_kafka import Message

    from riverbed.messaging.dedup import DedupFilter, MemoryStore

    def msg(off: int, eid: str | None) -> Message:
        return Message(
            topic="t",
            partition=0,
            offset=off,
            value=b"v",
            headers=[("ce_id", eid.encode())] if eid else [],
        )

    store = MemoryStore()
    store.mark("a")
    f = DedupFilter(store)
    batch = [msg(0, "a"), msg(1, "b"), msg(2, "b"), msg(3, None), msg(4, "c")]
    fresh = f.filter_batch(batch)
    assert [m.offset() for m in fresh] == [1, 3, 4]  # "a" known, the second "b" in the batch
    assert f.dropped == 2
    assert not store.seen("b")  # filtering marks nothing
    f.mark_batch(fresh)
    assert store.seen("b") and store.seen("c")
    assert f.filter_batch([msg(5, "b"), msg(6, "d")])[0].offset() == 6
    assert f.filter_batch([]) == []
