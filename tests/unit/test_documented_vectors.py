"""Encodings checked against examples published outside riverbed.

Kafka's protocol guide defines VARINT/VARLONG as "the variable-length zig-zag encoding from
Google Protocol Buffers" and UNSIGNED_VARINT as its unsigned form; the examples below are the
ones in the Protocol Buffers encoding guide (protobuf.dev/programming-guides/encoding: 1 is
01, 150 is 96 01; ZigZag maps 0, -1, 1, -2, 2^31-1, -2^31 to 0, 1, 2, 3, 2^32-2, 2^32-1).
The Kafka guide's COMPACT_STRING is "length N + 1 as an UNSIGNED_VARINT, then N bytes" and
a null COMPACT_NULLABLE_STRING is length 0; a classic STRING is an INT16 length, -1 for null.
"""

from __future__ import annotations

import pytest

from riverbed.protocol.primitives import Reader, Writer
from riverbed.protocol.varint import (
    decode_uvarint,
    decode_varint,
    encode_uvarint,
    encode_varint,
    zigzag_decode,
    zigzag_encode,
)


@pytest.mark.parametrize(("value", "encoded"), [(1, "01"), (150, "9601"), (0, "00"), (127, "7f"), (128, "8001")])
def test_unsigned_varint_protobuf_examples(value: int, encoded: str) -> None:
    assert encode_uvarint(value).hex() == encoded
    assert decode_uvarint(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)


@pytest.mark.parametrize(("signed", "unsigned"), [(0, 0), (-1, 1), (1, 2), (-2, 3), (2**31 - 1, 2**32 - 2), (-(2**31), 2**32 - 1)])
def test_zigzag_protobuf_examples(signed: int, unsigned: int) -> None:
    assert zigzag_encode(signed) == unsigned
    assert zigzag_decode(unsigned) == signed
    assert encode_varint(signed) == encode_uvarint(unsigned)
    assert decode_varint(encode_uvarint(unsigned), 0)[0] == signed


def test_compact_and_classic_strings_as_the_kafka_guide_defines_them() -> None:
    w = Writer()
    w.string("abc", True)  # COMPACT_STRING: 3 + 1, then the bytes
    w.nullable_string(None, True)  # COMPACT_NULLABLE_STRING null: 0
    w.string("abc", False)  # STRING: INT16 3, then the bytes
    w.nullable_string(None, False)  # NULLABLE_STRING null: INT16 -1
    raw = w.getvalue()
    assert raw.hex() == "04616263" + "00" + "0003616263" + "ffff"
    r = Reader(raw)
    assert (r.string(True), r.nullable_string(True), r.string(False), r.nullable_string(False)) == ("abc", None, "abc", None)
