"""Confluent's schema-registry wire format (riverbed.client.schema_wire)."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.client import schema_wire as wire


def _zigzag(n: int) -> bytes:
    """An independent encoder: zig-zag, then base-128 varint, low groups first."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=8))
def test_indexes_read_what_confluent_writes(indexes: list[int]) -> None:
    encoded = _zigzag(len(indexes)) + b"".join(_zigzag(i) for i in indexes) + b"rest"
    got, start = wire.read_indexes(encoded)
    assert got == indexes and encoded[start:] == b"rest"
    written = wire.write_indexes(indexes)
    assert wire.read_indexes(written + b"x") == (indexes, len(written))
    if indexes != [0]:
        assert written == encoded[:-4]


def test_first_message_is_one_zero_byte() -> None:
    assert wire.write_indexes([0]) == b"\x00"
    assert wire.read_indexes(b"\x00rest") == ([0], 1)
    assert wire.read_indexes(b"\x00\x00\x00\x00\x01\x00rest", 5) == ([0], 6)
    assert wire.read_indexes(b"\x04\x02\x06") == ([1, 3], 3)  # count 2, then 1 and 3


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "truncated"),
        (b"\x04\x02", "truncated"),  # two indexes announced, one present
        (b"\x80\x80", "truncated"),
        (b"\x01", "count -1"),
        (_zigzag(101), "count 101"),
        (b"\x02\x01", "negative"),
        (b"\xff" * 10 + b"\x01", "bad varint"),
    ],
)
def test_bad_indexes_are_value_errors(data: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        wire.read_indexes(data)


def test_head() -> None:
    assert wire.frame(258) == b"\x00\x00\x00\x01\x02"
    assert wire.schema_id(wire.frame(258) + b"payload") == 258
    assert wire.schema_id(b"\x01\x00\x00\x00\x01") is None  # not magic byte 0
    assert wire.schema_id(b"\x00\x00") is None  # too short


def test_message_at_and_indexes_of() -> None:
    proto = descriptor_pb2.FileDescriptorProto(name="t.proto", package="p", syntax="proto3")
    a = proto.message_type.add(name="A")
    b = proto.message_type.add(name="B")
    b.nested_type.add(name="B0")
    b.nested_type.add(name="B1").nested_type.add(name="Deep")
    del a
    file = descriptor_pool.DescriptorPool().Add(proto)
    assert wire.message_at(file, [0]).full_name == "p.A"
    deep = wire.message_at(file, [1, 1, 0])
    assert deep.full_name == "p.B.B1.Deep"
    assert wire.indexes_of(deep) == [1, 1, 0]
    assert wire.indexes_of(wire.message_at(file, [1])) == [1]
    with pytest.raises(ValueError, match="no message at"):
        wire.message_at(file, [2])
    with pytest.raises(ValueError, match="no message at"):
        wire.message_at(file, [0, 0])
