"""LocalDirStore: the ObjectStore contract on a directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.storage.remote import LocalDirStore, ObjectNotFound, ObjectStoreError


def test_round_trip(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path / "objects")
    store.put_bytes("a/b/one.log", b"0123456789")
    src = tmp_path / "src"
    src.write_bytes(b"x" * 3000)
    store.put_file("a/c/two.index", src)
    assert store.get("a/b/one.log") == b"0123456789"
    assert store.get("a/c/two.index") == b"x" * 3000
    assert store.get_range("a/b/one.log", 2, 3) == b"234"
    assert store.get_range("a/b/one.log", 8, 10) == b"89"
    assert store.get_range("a/b/one.log", 10, 5) == b""
    assert store.get_range("a/b/one.log", 50, 5) == b""
    assert store.head("a/b/one.log") == 10
    assert store.head("a/b/missing") is None
    assert store.list("a/") == ["a/b/one.log", "a/c/two.index"]
    assert store.list("a/b") == ["a/b/one.log"]
    store.put_bytes("a/b/one.log", b"new")  # replace
    assert store.get("a/b/one.log") == b"new"
    store.delete("a/b/one.log")
    store.delete("a/b/one.log")  # missing is fine
    assert store.list("") == ["a/c/two.index"]


def test_missing_and_invalid(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    with pytest.raises(ObjectNotFound) as info:
        store.get("nope")
    assert not info.value.retriable
    with pytest.raises(ObjectNotFound):
        store.get_range("nope", 0, 1)
    for bad in ("", "/abs", "a/../b", "a//b", "a/./b", "sp ace", ".tmp-x"):
        with pytest.raises(ObjectStoreError) as err:
            store.put_bytes(bad, b"")
        assert not err.value.retriable
    with pytest.raises(ObjectStoreError):
        store.get_range("x", -1, 2)


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalDirStore(tmp_path)
    missing = tmp_path / "does-not-exist"
    with pytest.raises(ObjectStoreError) as err:
        store.put_file("k/v", missing)
    assert err.value.retriable
    assert store.head("k/v") is None
    assert [p.name for p in (tmp_path / "k").iterdir()] == []
    # a leftover temp file (a crash mid-write) is never listed
    (tmp_path / "k" / ".tmp-abc-v").write_bytes(b"half")
    assert store.list("") == []
