"""riverbed._native.recscan agrees with the Python walk of a records block (schema_ids._fields)
on every well-formed block, and refuses malformed ones with ValueError, never a crash."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.broker.schema_ids import _fields
from riverbed.protocol.records.records import _encode_record

if os.environ.get("CI"):  # CI has a compiler: a helper that failed to build is a failure there
    from riverbed._native import recscan
else:
    recscan = pytest.importorskip("riverbed._native.recscan", reason="the C helpers are not built (no compiler when installing)")

payload = st.none() | st.binary(max_size=40) | st.sampled_from([b"\x00\x00\x00\x00\x01rest", b"\x00\x00\x00\x00\x02", b"\x00"])
records = st.lists(
    st.tuples(payload, payload, st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=8)), max_size=2), st.integers(-(2**40), 2**40)),
    max_size=30,
)


def block_of(recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]]) -> bytes:
    out = bytearray()
    for i, (key, value, headers, ts) in enumerate(recs):
        _encode_record(out, i, ts, key, value, headers)
    return bytes(out)


def python_prefixes(block: bytes, count: int, side: int) -> dict[bytes | None, int]:
    out: dict[bytes | None, int] = {}
    for i, f in enumerate(_fields(block, count)):
        start, size = (f[0], f[1]) if side == 0 else (f[2], f[3])
        out.setdefault(None if size < 0 else block[start : start + min(size, 5)], i)
    return out


@settings(max_examples=300, deadline=None)
@given(records)
def test_agrees_with_the_python_walk(recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]]) -> None:
    block = block_of(recs)
    for side in (0, 1):
        assert recscan.prefixes(block, len(recs), side) == python_prefixes(block, len(recs), side)


@settings(max_examples=300, deadline=None)
@given(records.filter(bool), st.data())
def test_malformed_blocks_raise_value_error(recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]], data: st.DataObject) -> None:
    block = bytearray(block_of(recs))
    cut = data.draw(st.integers(0, len(block) - 1))
    mutated = data.draw(st.sampled_from(["truncate", "flip", "count"]))
    count = len(recs)
    if mutated == "truncate":
        block = block[:cut]
    elif mutated == "flip":
        block[cut] ^= data.draw(st.integers(1, 255))
    else:
        count += data.draw(st.integers(1, 5))
    try:
        got = recscan.prefixes(bytes(block), count, data.draw(st.sampled_from([0, 1])))
    except ValueError:
        return
    assert isinstance(got, dict)  # a flip can leave a well-formed block: then an answer, no crash


def _python_count(block: bytes) -> tuple[str, int | str]:
    from riverbed.protocol.records.batch import InvalidBatch
    from riverbed.protocol.records.records import count_records_python

    try:
        return "ok", count_records_python(block)
    except InvalidBatch as exc:
        return "error", str(exc)


def _c_count(block: bytes) -> tuple[str, int | str]:
    from riverbed.protocol.records import records
    from riverbed.protocol.records.batch import InvalidBatch

    assert records._recscan is not None
    try:
        return "ok", records.count_records(block)
    except InvalidBatch as exc:
        return "error", str(exc)


@settings(max_examples=500, deadline=None)
@given(records, st.binary(max_size=12), st.integers(0, 3))
def test_count_agrees_with_the_python_walk(recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]], junk: bytes, how: int) -> None:
    """The same count, or the same error message, on well-formed blocks and on blocks with
    junk appended, cut short or made of junk alone."""
    block = block_of(recs)
    variants = [block, block + junk, block[: len(block) // 2], junk]
    assert _c_count(variants[how]) == _python_count(variants[how])


def test_count_of_well_formed_blocks() -> None:
    block = block_of([(b"k", b"v" * 300, [], 0)] * 7)
    assert _c_count(block) == ("ok", 7)
    assert _c_count(b"\x01") == _python_count(b"\x01") == ("error", "negative length for record 0")
    assert _c_count(b"\x80") == _python_count(b"\x80")
    assert _c_count(b"\x80\x80\x80\x80\x80\x00") == _python_count(b"\x80\x80\x80\x80\x80\x00")
