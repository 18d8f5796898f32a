"""pgoutput decoding: a test-side encoder written from PostgreSQL's documented message formats,
round trips under Hypothesis, and malformed input raising DecodeError only."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.connect import pgoutput as p


def s(text: str) -> bytes:
    return text.encode() + b"\0"


def tup(values: tuple[object, ...]) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is p.UNCHANGED_TOAST:
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack(">i", len(v)) + v
    return out


def encode(m: object) -> bytes:
    if isinstance(m, p.Begin):
        return b"B" + struct.pack(">QqI", m.final_lsn, m.commit_ts, m.xid)
    if isinstance(m, p.Commit):
        return b"C" + struct.pack(">BQQq", m.flags, m.commit_lsn, m.end_lsn, m.commit_ts)
    if isinstance(m, p.Relation):
        out = b"R" + struct.pack(">I", m.oid) + s(m.namespace) + s(m.name) + m.replica_identity.encode() + struct.pack(">h", len(m.columns))
        for c in m.columns:
            out += bytes([1 if c.key else 0]) + s(c.name) + struct.pack(">Ii", c.type_oid, c.type_modifier)
        return out
    if isinstance(m, p.TypeMsg):
        return b"Y" + struct.pack(">I", m.oid) + s(m.namespace) + s(m.name)
    if isinstance(m, p.Insert):
        return b"I" + struct.pack(">I", m.relation_oid) + b"N" + tup(m.new)
    if isinstance(m, p.Update):
        old = b"" if m.old is None else (m.old_kind or "K").encode() + tup(m.old)
        return b"U" + struct.pack(">I", m.relation_oid) + old + b"N" + tup(m.new)
    if isinstance(m, p.Delete):
        return b"D" + struct.pack(">I", m.relation_oid) + m.old_kind.encode() + tup(m.old)
    if isinstance(m, p.Truncate):
        return b"T" + struct.pack(">iB", len(m.relation_oids), m.options) + b"".join(struct.pack(">I", o) for o in m.relation_oids)
    if isinstance(m, p.Origin):
        return b"O" + struct.pack(">Q", m.lsn) + s(m.name)
    raise AssertionError(m)


u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
name = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20)
value = st.one_of(st.none(), st.just(p.UNCHANGED_TOAST), st.binary(max_size=40))
tuples = st.lists(value, max_size=8).map(tuple)
columns = st.lists(st.builds(p.Column, name, u32, st.integers(-(2**31), 2**31 - 1), st.booleans()), max_size=6).map(tuple)
messages = st.one_of(
    st.builds(p.Begin, u64, i64, u32),
    st.builds(p.Commit, st.integers(0, 255), u64, u64, i64),
    st.builds(p.Relation, u32, name, name, st.sampled_from("dnfi"), columns),
    st.builds(p.TypeMsg, u32, name, name),
    st.builds(p.Insert, u32, tuples),
    st.builds(p.Update, u32, tuples),
    st.builds(lambda o, n, old, k: p.Update(o, n, old, k), u32, tuples, tuples, st.sampled_from("KO")),
    st.builds(p.Delete, u32, tuples, st.sampled_from("KO")),
    st.builds(p.Truncate, st.integers(0, 3), st.lists(u32, max_size=5).map(tuple)),
    st.builds(p.Origin, u64, name),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg: object) -> None:
    assert p.decode(encode(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_truncated_or_extended_messages_raise_decode_error(msg: object, data: st.DataObject) -> None:
    raw = encode(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(p.DecodeError):
        p.decode(raw[:cut])
    with pytest.raises(p.DecodeError):
        p.decode(raw + b"x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(raw: bytes) -> None:
    with contextlib.suppress(p.DecodeError):
        p.decode(raw)
    with contextlib.suppress(p.DecodeError):
        p.decode_stream(raw)


def test_known_insert_bytes() -> None:
    # an Insert as PostgreSQL sends it: relation 16384, (1, 'a', NULL)
    raw = b"I\x00\x00\x40\x00N\x00\x03t\x00\x00\x00\x011t\x00\x00\x00\x01an"
    assert p.decode(raw) == p.Insert(16384, (b"1", b"a", None))


def test_stream_framing_and_status_update() -> None:
    w = b"w" + struct.pack(">QQq", 10, 20, 30) + b"B..."
    assert p.decode_stream(w) == p.XLogData(10, 20, 30, b"B...")
    k = b"k" + struct.pack(">QqB", 99, 5, 1)
    assert p.decode_stream(k) == p.Keepalive(99, 5, True)
    r = p.standby_status(1, 2, 3, 4, reply=False)
    assert r == b"r" + struct.pack(">QQQqB", 1, 2, 3, 4, 0)


@given(u64)
def test_lsn_text_round_trip(lsn: int) -> None:
    assert p.parse_lsn(p.format_lsn(lsn)) == lsn


def test_lsn_examples() -> None:
    assert p.format_lsn(0x16B374D848) == "16/B374D848"
    assert p.parse_lsn("0/1516000") == 0x1516000
