"""riverbed._native.cleanscan agrees with the Python walks of riverbed.storage.cleaner_scan on
every well-formed records block (the cleaner's key map and its keep/drop verdicts), and refuses
malformed blocks with ValueError, never a crash."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.protocol.records.records import _encode_record
from riverbed.storage.cleaner_scan import filter_records_python, map_keys_python

if os.environ.get("CI"):  # CI has a compiler: a helper that failed to build is a failure there
    from riverbed._native import cleanscan
else:
    cleanscan = pytest.importorskip("riverbed._native.cleanscan", reason="the C helpers are not built (no compiler when installing)")

Rec = tuple[bytes | None, bytes | None, int, int]
keys = st.none() | st.sampled_from([b"a", b"b", b"", b"k" * 20]) | st.binary(max_size=24)
records = st.lists(
    st.tuples(keys, st.none() | st.binary(max_size=12), st.integers(0, 3), st.integers(-(2**40), 2**40)),
    max_size=30,
)


def block_of(recs: list[Rec]) -> bytes:
    """Records with increasing (possibly sparse: a cleaned batch) offset deltas."""
    out = bytearray()
    delta = 0
    for key, value, gap, ts in recs:
        delta += gap
        _encode_record(out, delta, ts, key, value, [("h", b"x")] if gap == 3 else [])
    return bytes(out)


def some_map(recs: list[Rec], base: int, bump: int) -> dict[bytes, int]:
    return {k: base + i * bump for i, (k, *_rest) in enumerate(recs) if k is not None}


@settings(max_examples=300, deadline=None)
@given(records, st.integers(0, 2**40), st.integers(0, 40), st.integers(0, 2000), st.sampled_from([80, 160]))
def test_map_keys_agrees(recs: list[Rec], base: int, dirty: int, budget: int, entry: int) -> None:
    block = block_of(recs)
    start = {b"a": 1}
    m_c, m_py = dict(start), dict(start)
    got_c = cleanscan.map_keys(block, len(recs), base, base + dirty, m_c, budget, entry)
    got_py = map_keys_python(block, len(recs), base, base + dirty, m_py, budget, entry)
    assert got_c == got_py
    assert m_c == m_py


@settings(max_examples=300, deadline=None)
@given(records, st.integers(0, 2**40), st.integers(0, 60), st.integers(-2, 3), st.booleans())
def test_filter_records_agrees(recs: list[Rec], base: int, end: int, bump: int, drop: bool) -> None:
    block = block_of(recs)
    offset_map = some_map(recs, base, bump)
    got_c = cleanscan.filter_records(block, len(recs), base, base + end, offset_map, drop)
    got_py = filter_records_python(block, len(recs), base, base + end, offset_map, drop)
    assert got_c == got_py
    kept, n = got_c[0], got_c[1]
    if kept is None:
        assert n == len(recs)


def test_filter_records_keeps_the_latest_bytes_as_they_were() -> None:
    recs: list[Rec] = [(b"a", b"1", 1, 10), (b"b", b"2", 1, 20), (b"a", b"3", 1, 30), (b"b", None, 1, 40), (None, b"x", 1, 50)]
    block = block_of(recs)
    offset_map: dict[bytes, int] = {}
    assert map_keys_python(block, 5, 100, 0, offset_map, 10_000, 160) == (-1, 320, 104)
    assert offset_map == {b"a": 103, b"b": 104}
    # a (103) and the tombstone of b (104) stay; the keyless record goes
    kept, n, invalid, tomb_removed, tomb_kept, max_ts = filter_records_python(block, 5, 100, 1000, offset_map, False)
    single = [block_of([r]) for r in recs]
    assert (n, invalid, tomb_removed, tomb_kept, max_ts) == (2, 1, 0, True, 40)
    assert kept is not None and len(kept) == len(single[2]) + len(single[3])
    assert cleanscan.filter_records(block, 5, 100, 1000, offset_map, True)[1:] == (1, 1, 1, False, 30)


@settings(max_examples=300, deadline=None)
@given(records.filter(bool), st.data())
def test_malformed_blocks_raise_value_error(recs: list[Rec], data: st.DataObject) -> None:
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
    outcomes = []
    for walk in (cleanscan.map_keys, map_keys_python):
        try:
            outcomes.append(walk(bytes(block), count, 0, 0, {}, 1 << 20, 160))
        except ValueError:
            outcomes.append("error")
    assert outcomes[0] == outcomes[1]  # a flip may leave a well-formed block: the same answer
    outcomes = []
    for scan in (cleanscan.filter_records, filter_records_python):
        try:
            outcomes.append(scan(bytes(block), count, 0, 5, {b"a": 3}, True))
        except ValueError:
            outcomes.append("error")
    assert outcomes[0] == outcomes[1]
