"""Records inside v2 batches: build/decode round trips for every codec, the shallow count,
control records, header patching (baseOffset, LogAppendTime + CRC), a golden batch checked
against an independent CRC-32C, Kafka's produce validation rules (one test per rule, exact
error code) and fuzzing (decoders and the validator raise only their own exception types)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import (
    HEADER_SIZE,
    BatchHeader,
    InvalidBatch,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    validate_batch,
)
from riverbed.protocol.records.compression import Compression, compress
from riverbed.protocol.records.records import (
    Record,
    RecordInput,
    build_batch,
    build_control_batch,
    build_single_record_batch,
    count_records,
    decode_records,
    parse_control_record,
)
from riverbed.protocol.records.validation import (
    RecordValidationError,
    validate_produce_records,
)

CODECS = list(Compression)
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
ROUND_TRIP = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
TS = 1_700_000_000_000


# --------------------------------------------------------------------------- helpers


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def slow_crc32c(data: bytes) -> int:
    """Bit-by-bit-table CRC-32C (Castagnoli), independent of the crc32c package."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def fix_crc(buf: bytearray) -> bytearray:
    struct.pack_into(">I", buf, 17, slow_crc32c(bytes(buf[21:])))
    return buf


# field name -> (struct format, offset) in the 61-byte header
FIELDS = {
    "base_offset": (">q", 0),
    "batch_length": (">i", 8),
    "partition_leader_epoch": (">i", 12),
    "magic": (">b", 16),
    "crc": (">I", 17),
    "attributes": (">h", 21),
    "last_offset_delta": (">i", 23),
    "base_timestamp": (">q", 27),
    "max_timestamp": (">q", 35),
    "producer_id": (">q", 43),
    "producer_epoch": (">h", 51),
    "base_sequence": (">i", 53),
    "records_count": (">i", 57),
}


def patch(buf: bytearray, crc: bool = True, **fields: int) -> bytearray:
    out = bytearray(buf)
    for name, value in fields.items():
        fmt, offset = FIELDS[name]
        struct.pack_into(fmt, out, offset, value)
    return fix_crc(out) if crc else out


def simple(n: int = 3, **kwargs: object) -> bytearray:
    recs = [(b"key-%d" % i, b"value-%d" % i, [("h", b"x")], TS + i) for i in range(n)]
    return build_batch(recs, **kwargs)  # type: ignore[arg-type]


def validate(buf: bytes | bytearray, **kwargs: object) -> BatchHeader:
    options: dict[str, object] = {"max_message_bytes": 1 << 20, "zstd_allowed": True}
    options.update(kwargs)
    return validate_produce_records(buf, **options)  # type: ignore[arg-type]


def code_of(buf: bytes | bytearray, **kwargs: object) -> ErrorCode:
    with pytest.raises(RecordValidationError) as info:
        validate(buf, **kwargs)
    return info.value.code


record_strategy = st.tuples(
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=200),
    st.lists(st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=20)), max_size=4),
    st.integers(0, 2**42),
)


# --------------------------------------------------------------------------- golden


def test_independent_crc32c_matches_the_check_value() -> None:
    assert slow_crc32c(b"123456789") == 0xE3069283


def test_golden_batch_bytes_and_crc() -> None:
    """A batch assembled by hand, field by field, equals build_batch's output, and its CRC
    is the CRC-32C of bytes [21, end) computed independently."""
    record = bytes.fromhex(
        "24"  # length 18 (zigzag 36)
        "00"  # attributes
        "00"  # timestampDelta 0
        "00"  # offsetDelta 0
        "06" + b"key".hex() + "0a" + b"value".hex() + "02"  # 1 header
        "02" + b"h".hex() + "02" + b"1".hex()
    )
    assert len(record) == 19
    body = struct.pack(">hiqqqhii", 0, 0, TS, TS, 7, 3, 42, 1) + record
    crc = slow_crc32c(body)
    expected = struct.pack(">qiib", 5, 9 + len(body), 11, 2) + struct.pack(">I", crc) + body
    built = build_batch(
        [(b"key", b"value", [("h", b"1")], TS)],
        base_offset=5,
        partition_leader_epoch=11,
        producer_id=7,
        producer_epoch=3,
        base_sequence=42,
    )
    assert bytes(built) == expected
    header = validate_batch(built)
    assert header.crc == crc
    assert header.size == len(expected) == HEADER_SIZE + 19


def test_crc_matches_the_independent_crc32c_for_every_codec() -> None:
    # Pin the crc32c package against the independent implementation on real batch bytes.
    for codec in CODECS:
        buf = simple(5, compression=codec)
        assert validate_batch(buf).crc == slow_crc32c(bytes(buf[21:]))


# --------------------------------------------------------------------------- round trips


@ROUND_TRIP
@given(
    records=st.lists(record_strategy, min_size=1, max_size=20),
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(0, 2**40),
)
def test_build_decode_round_trip(
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    codec: Compression,
    base_offset: int,
) -> None:
    buf = build_batch(records, compression=codec, base_offset=base_offset)
    header = validate_batch(buf)
    assert header.compression == codec
    assert header.records_count == len(records)
    assert header.last_offset_delta == len(records) - 1
    assert header.base_timestamp == records[0][3]
    assert header.max_timestamp == max(r[3] for r in records)
    decoded = decode_records(buf)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decoded] == [
        (base_offset + i, ts, k, v, h) for i, (k, v, h, ts) in enumerate(records)
    ]
    if codec is Compression.NONE:
        assert count_records(memoryview(buf)[HEADER_SIZE:]) == len(records)
        assert count_records(bytes(buf[HEADER_SIZE:])) == len(records)


@pytest.mark.parametrize("codec", CODECS)
def test_many_records(codec: Compression) -> None:
    records = [
        (None if i % 7 == 0 else b"k%d" % i, None if i % 11 == 0 else b"v" * (i % 300), (), TS + i)
        for i in range(10_000)
    ]
    buf = build_batch(records, compression=codec, base_offset=1000)
    decoded = decode_records(buf)
    assert len(decoded) == 10_000
    assert decoded[-1].offset == 10_999
    assert decoded[7].key is None and decoded[11].value is None
    assert decoded[12].value == b"v" * 12
    validate(build_batch(records, compression=codec), max_message_bytes=1 << 30)


def test_keys_values_headers_none_and_unicode() -> None:
    records = [
        (None, None, [], TS),
        (b"", b"", [("", b""), ("k", None)], TS - 5),  # empty is not null; negative delta
        (b"k", None, [("clé-ü-漢", b"\x00\xff"), ("dup", b"1"), ("dup", None)], TS + 10),
    ]
    buf = build_batch(records)
    out = decode_records(buf)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in out] == [
        (k, v, h, t) for k, v, h, t in records
    ]
    assert validate_batch(buf).max_timestamp == TS + 10


def test_record_objects_and_short_tuples_as_input() -> None:
    records: list[RecordInput] = [
        Record(offset=99, timestamp=TS, key=b"a", value=b"1", headers=[("x", None)]),
        (b"b", b"2"),
        (b"c", b"3", [("y", b"z")]),
    ]
    buf = build_batch(records, base_timestamp=TS + 1)
    out = decode_records(buf)
    assert [r.offset for r in out] == [0, 1, 2]  # a Record's offset is ignored
    assert [r.timestamp for r in out] == [TS, TS + 1, TS + 1]
    assert out[0].headers == [("x", None)] and out[2].headers == [("y", b"z")]


def test_batch_flags_and_producer_fields() -> None:
    buf = simple(
        2,
        producer_id=77,
        producer_epoch=4,
        base_sequence=100,
        transactional=True,
        partition_leader_epoch=9,
    )
    h = validate_batch(buf)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (77, 4, 100)
    assert h.is_transactional and not h.is_control and not h.is_log_append_time
    assert h.partition_leader_epoch == 9
    assert h.last_sequence == 101


def test_empty_batch() -> None:
    buf = build_batch([], base_timestamp=TS)
    h = validate_batch(buf)
    assert (h.records_count, h.last_offset_delta, h.size) == (0, -1, HEADER_SIZE)
    assert decode_records(buf) == []


def test_decode_at_position_in_a_larger_buffer() -> None:
    first = simple(2, base_offset=0)
    second = simple(3, base_offset=2, compression=Compression.LZ4)
    joined = bytes(first + second)
    assert [r.offset for r in decode_records(joined, len(first))] == [2, 3, 4]


# --------------------------------------------------------------------------- header patching


def test_set_base_offset_keeps_the_crc_valid() -> None:
    buf = simple(3, compression=Compression.GZIP)
    crc = validate_batch(buf).crc
    set_base_offset(buf, 123_456)
    set_partition_leader_epoch(buf, 17)
    h = validate_batch(buf, check_crc=True)
    assert h.crc == crc == slow_crc32c(bytes(buf[21:]))
    assert (h.base_offset, h.partition_leader_epoch) == (123_456, 17)
    assert [r.offset for r in decode_records(buf)] == [123_456, 123_457, 123_458]


@pytest.mark.parametrize("codec", CODECS)
def test_set_log_append_time_recomputes_the_crc(codec: Compression) -> None:
    buf = simple(4, compression=codec)
    old_crc = validate_batch(buf).crc
    set_log_append_time(buf, TS + 99_000)
    h = validate_batch(buf, check_crc=True)
    assert h.crc != old_crc
    assert h.crc == slow_crc32c(bytes(buf[21:]))
    assert h.is_log_append_time and h.max_timestamp == TS + 99_000
    assert h.compression == codec  # other attribute bits preserved
    assert {r.timestamp for r in decode_records(buf)} == {TS + 99_000}


def test_build_with_log_append_time() -> None:
    buf = build_batch([(b"k", b"v", (), TS)], base_timestamp=TS + 5, log_append_time=True)
    h = validate_batch(buf)
    assert h.is_log_append_time and h.max_timestamp == TS + 5
    assert decode_records(buf)[0].timestamp == TS + 5


# --------------------------------------------------------------------------- control records


@pytest.mark.parametrize("commit", [True, False])
def test_control_batch(commit: bool) -> None:
    buf = build_control_batch(
        producer_id=4000, producer_epoch=2, commit=commit, coordinator_epoch=13,
        base_offset=50, timestamp=TS,
    )  # fmt: skip
    h = validate_batch(buf)
    assert h.is_control and h.is_transactional
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (4000, 2, -1)
    assert (h.base_offset, h.records_count, h.max_timestamp) == (50, 1, TS)
    (record,) = decode_records(buf)
    assert record.offset == 50
    assert record.key == struct.pack(">hh", 0, 1 if commit else 0)
    assert record.value == struct.pack(">hi", 0, 13)
    assert parse_control_record(record) == (commit, 13)


@pytest.mark.parametrize(
    ("key", "value", "ts"),
    [(b"k", b"v", TS), (None, b"v" * 300, 0), (b"\x00\x00\x00\x02t1", None, -1), (b"", b"", TS + 7)],
)
def test_single_record_batch_is_the_batch_build_batch_makes(key: bytes | None, value: bytes | None, ts: int) -> None:
    assert bytes(build_single_record_batch(key, value, ts)) == bytes(build_batch([(key, value, [], ts)]))


@pytest.mark.parametrize(
    ("pid", "epoch", "commit", "coord", "base", "ts", "ple"),
    [(4000, 2, True, 13, 50, TS, -1), (1, 0, False, 0, 0, 0, 7), ((1 << 63) - 1, 32767, True, (1 << 31) - 1, 9, TS + 1, 0)],
)
def test_control_batch_is_the_batch_build_batch_makes(pid: int, epoch: int, commit: bool, coord: int, base: int, ts: int, ple: int) -> None:
    """The marker's own builder (a cached record, one header) gives the very bytes of the
    general builder."""
    key = struct.pack(">hh", 0, 1 if commit else 0)
    value = struct.pack(">hi", 0, coord)
    general = build_batch(
        [(key, value, (), ts)], base_offset=base, base_timestamp=ts, producer_id=pid, producer_epoch=epoch,
        transactional=True, control=True, partition_leader_epoch=ple,
    )  # fmt: skip
    assert bytes(build_control_batch(pid, epoch, commit, coord, base, ts, partition_leader_epoch=ple)) == bytes(general)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, struct.pack(">hi", 0, 1)),
        (b"\x00\x00\x00", struct.pack(">hi", 0, 1)),
        (struct.pack(">hh", 0, 2), struct.pack(">hi", 0, 1)),  # LEADER_CHANGE, not a marker
        (struct.pack(">hh", -1, 1), struct.pack(">hi", 0, 1)),
        (struct.pack(">hh", 0, 1), None),
        (struct.pack(">hh", 0, 1), b"\x00\x00\x00"),
    ],
)
def test_parse_control_record_rejects_non_markers(key: bytes | None, value: bytes | None) -> None:
    with pytest.raises(InvalidBatch):
        parse_control_record(Record(0, TS, key, value))


def test_parse_control_record_accepts_newer_versions() -> None:
    # Kafka reads the fields it knows from higher versions (extra bytes are ignored).
    key = struct.pack(">hh", 1, 1)
    value = struct.pack(">hi", 1, 7) + b"extra"
    assert parse_control_record(Record(0, TS, key, value)) == (True, 7)


# --------------------------------------------------------------------------- count_records


def test_count_records_examples() -> None:
    assert count_records(b"") == 0
    assert count_records(b"\x00") == 1  # a zero-length record: counted, decoding rejects it
    assert count_records(b"\x04ab\x02c") == 2
    long_record = b"\x90\x03" + bytes(200)  # 2-byte length varint (200)
    assert count_records(long_record * 3) == 3
    huge = bytes.fromhex("80 80 01".replace(" ", "")) + bytes(8192)  # 3-byte varint (8192)
    assert count_records(huge) == 1


@pytest.mark.parametrize(
    "block",
    [
        b"\x03abc",  # negative length (-2)
        b"\x06ab",  # overruns the block
        b"\x04ab\x02",  # last record truncated
        b"\x80",  # truncated varint
        b"\x90",  # truncated 2-byte varint
        b"\xff\xff\xff\xff\xff\xff",  # over-long varint
        b"\x91\x03" + bytes(200),  # negative 2-byte length
    ],
)
def test_count_records_rejects_bad_blocks(block: bytes) -> None:
    with pytest.raises(InvalidBatch) as info:
        count_records(block)
    assert not info.value.corrupt


def test_count_records_of_a_large_block() -> None:
    # the rate (measured ~10M records/s) is in benchmarks/micro_bounds.py, not asserted here
    recs = [(None, b"x" * 90, (), TS) for _ in range(10_000)]
    block = memoryview(build_batch(recs))[HEADER_SIZE:]
    assert 99 <= len(block) / 10_000 <= 101  # ~100-byte records
    assert count_records(block) == 10_000


# --------------------------------------------------------------------------- decode errors


def test_decode_count_mismatch_is_invalid_not_corrupt() -> None:
    for codec in CODECS:
        buf = simple(3, compression=codec)
        for count in (2, 4):
            with pytest.raises(InvalidBatch) as info:
                decode_records(patch(buf, records_count=count, last_offset_delta=count - 1))
            assert not info.value.corrupt


def test_decode_record_length_mismatch() -> None:
    buf = build_batch([(b"abc", b"v", (), TS)])
    assert buf[HEADER_SIZE + 4] == 0x06  # key length 3 of the only record
    broken = bytearray(buf)
    broken[HEADER_SIZE + 4] = 0x04  # key length 2: fields no longer add up to the length
    with pytest.raises(InvalidBatch) as info:
        decode_records(fix_crc(broken))
    assert not info.value.corrupt


def test_decode_checks_crc_unless_told_not_to() -> None:
    buf = simple(2)
    buf[-1] ^= 0x01
    with pytest.raises(InvalidBatch) as info:
        decode_records(buf)
    assert info.value.corrupt
    decode_records(buf, check_crc=False)  # a header-value byte changed: still decodable


def test_decode_unknown_codec_and_bad_compressed_data() -> None:
    buf = simple(2)
    with pytest.raises(InvalidBatch) as info:
        decode_records(patch(buf, attributes=5))
    assert info.value.corrupt
    lz = simple(2, compression=Compression.LZ4)
    lz[HEADER_SIZE + 8] ^= 0xFF
    with pytest.raises(InvalidBatch) as info:
        decode_records(fix_crc(lz))
    assert info.value.corrupt


def test_decode_refuses_bombs() -> None:
    buf = build_batch([(None, bytes(2_000_000), (), TS)], compression=Compression.ZSTD)
    assert len(buf) < 10_000
    with pytest.raises(InvalidBatch):
        decode_records(buf, max_uncompressed=1_000_000)
    assert decode_records(buf, max_uncompressed=3_000_000)[0].value == bytes(2_000_000)


# --------------------------------------------------------------------------- validation rules


def test_valid_batches_pass_and_return_the_header() -> None:
    for codec in CODECS:
        h = validate(simple(5, compression=codec, producer_id=3, base_sequence=0))
        assert (h.records_count, h.compression, h.position) == (5, codec, 0)
    validate(simple(1), require_keys=True, deep=True)
    validate(simple(2, transactional=True, producer_id=1, producer_epoch=0, base_sequence=5))


def test_error_is_a_kafka_error() -> None:
    with pytest.raises(KafkaError) as info:
        validate(b"")
    assert isinstance(info.value, RecordValidationError)
    assert info.value.code == ErrorCode.INVALID_RECORD
    assert info.value.record_errors == []


@pytest.mark.parametrize("data", [b"", b"\x00" * 11])
def test_no_batch_is_invalid_record(data: bytes) -> None:
    assert code_of(data) == ErrorCode.INVALID_RECORD


def test_batch_length_below_minimum_is_corrupt() -> None:
    assert code_of(patch(simple(), crc=False, batch_length=13)) == ErrorCode.CORRUPT_MESSAGE
    assert code_of(patch(simple(), crc=False, batch_length=-1)) == ErrorCode.CORRUPT_MESSAGE


def test_truncated_batch_is_invalid_record() -> None:
    assert code_of(simple()[:-1]) == ErrorCode.INVALID_RECORD
    assert code_of(simple()[:30]) == ErrorCode.INVALID_RECORD


@pytest.mark.parametrize("magic", [0, 1])
def test_old_magic_is_invalid_record(magic: int) -> None:
    assert code_of(patch(simple(), magic=magic)) == ErrorCode.INVALID_RECORD


@pytest.mark.parametrize("magic", [3, 42, -1])
def test_unknown_magic_is_corrupt(magic: int) -> None:
    assert code_of(patch(simple(), magic=magic)) == ErrorCode.CORRUPT_MESSAGE


def test_v2_batch_shorter_than_its_header_is_corrupt() -> None:
    short = bytearray(simple()[:40])
    struct.pack_into(">i", short, 8, 40 - 12)
    assert code_of(short) == ErrorCode.CORRUPT_MESSAGE


def test_zstd_needs_produce_v7() -> None:
    buf = simple(compression=Compression.ZSTD)
    assert code_of(buf, zstd_allowed=False) == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    validate(buf, zstd_allowed=True)
    validate(simple(compression=Compression.GZIP), zstd_allowed=False)


def test_more_than_one_batch_is_invalid_record() -> None:
    assert code_of(simple() + simple()) == ErrorCode.INVALID_RECORD
    assert code_of(simple() + b"\x00") == ErrorCode.INVALID_RECORD  # trailing bytes too


def test_nonzero_base_offset_is_invalid_record() -> None:
    assert code_of(simple(base_offset=1)) == ErrorCode.INVALID_RECORD


def test_batch_over_max_message_bytes_is_too_large() -> None:
    buf = simple(10)
    validate(buf, max_message_bytes=len(buf))
    assert code_of(buf, max_message_bytes=len(buf) - 1) == ErrorCode.MESSAGE_TOO_LARGE


def test_crc_mismatch_is_corrupt() -> None:
    buf = simple()
    buf[-1] ^= 0x40
    assert code_of(buf) == ErrorCode.CORRUPT_MESSAGE
    # A header field inside the CRC changed without refreshing the CRC.
    assert code_of(patch(simple(), crc=False, producer_epoch=9)) == ErrorCode.CORRUPT_MESSAGE


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_unknown_compression_type_is_unknown_server_error(codec: int) -> None:
    assert code_of(patch(simple(), attributes=codec)) == ErrorCode.UNKNOWN_SERVER_ERROR


def test_offset_range_and_count_rules() -> None:
    buf = simple(3)
    # lastOffsetDelta + 1 <= 0
    assert code_of(patch(buf, last_offset_delta=-1)) == ErrorCode.INVALID_RECORD
    # count <= 0
    assert code_of(patch(buf, records_count=0)) == ErrorCode.INVALID_RECORD
    assert code_of(build_batch([], base_timestamp=TS)) == ErrorCode.INVALID_RECORD
    # count != lastOffsetDelta + 1
    assert code_of(patch(buf, last_offset_delta=1)) == ErrorCode.INVALID_RECORD
    assert code_of(patch(buf, records_count=4)) == ErrorCode.INVALID_RECORD


def test_control_batch_from_a_client_is_invalid_record() -> None:
    marker = build_control_batch(1, 0, True, 0, 0, TS)
    assert code_of(marker) == ErrorCode.INVALID_RECORD
    assert code_of(simple(control=True)) == ErrorCode.INVALID_RECORD


def test_producer_id_without_sequence_is_invalid_record() -> None:
    assert code_of(simple(producer_id=5, base_sequence=-1)) == ErrorCode.INVALID_RECORD
    validate(simple(producer_id=-1, base_sequence=-1))
    validate(simple(producer_id=5, base_sequence=0))


@pytest.mark.parametrize("codec", CODECS)
def test_records_count_must_match_the_records(codec: Compression) -> None:
    buf = simple(3, compression=codec)
    for count in (2, 4):
        broken = patch(buf, records_count=count, last_offset_delta=count - 1)
        assert code_of(broken) == ErrorCode.INVALID_RECORD
        assert code_of(broken, deep=True) == ErrorCode.INVALID_RECORD


def test_records_not_tiling_the_block_are_invalid_record() -> None:
    buf = simple(3)
    broken = bytearray(buf)
    broken[HEADER_SIZE] = 0x7E  # first record's length: 63 bytes, past the real one
    assert code_of(fix_crc(broken)) == ErrorCode.INVALID_RECORD


def test_deep_validation_finds_bad_record_structure() -> None:
    buf = build_batch([(b"abc", b"v", (), TS), (b"d", b"e", (), TS)])
    broken = bytearray(buf)
    broken[HEADER_SIZE + 4] = 0x04  # key length 3 -> 2 inside a record of unchanged length
    fix_crc(broken)
    validate(broken)  # the shallow walk only sees lengths
    assert code_of(broken, deep=True) == ErrorCode.INVALID_RECORD
    assert code_of(broken, require_keys=True) == ErrorCode.INVALID_RECORD


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not Compression.NONE])
def test_undecompressable_payload_is_corrupt(codec: Compression) -> None:
    buf = simple(3, compression=codec)
    broken = bytearray(buf[:HEADER_SIZE]) + b"\xde\xad\xbe\xef" * 8
    struct.pack_into(">i", broken, 8, len(broken) - 12)
    assert code_of(fix_crc(broken)) == ErrorCode.CORRUPT_MESSAGE


def test_decompression_bomb_is_message_too_large() -> None:
    buf = build_batch([(None, bytes(3_000_000), (), TS)], compression=Compression.GZIP)
    assert code_of(buf, max_uncompressed=1_000_000) == ErrorCode.MESSAGE_TOO_LARGE
    validate(buf, max_uncompressed=4_000_000)


@pytest.mark.parametrize("codec", CODECS)
def test_compacted_topics_need_keys(codec: Compression) -> None:
    buf = build_batch(
        [(b"k", b"v", (), TS), (None, b"v", (), TS), (b"k2", None, (), TS), (None, None, (), TS)],
        compression=codec,
    )
    validate(buf)  # fine for a non-compacted topic
    with pytest.raises(RecordValidationError) as info:
        validate(buf, require_keys=True)
    assert info.value.code == ErrorCode.INVALID_RECORD
    assert [i for i, _ in info.value.record_errors] == [1, 3]
    validate(simple(3, compression=codec), require_keys=True)


def test_log_append_time_from_a_client_is_invalid_timestamp() -> None:
    buf = build_batch([(b"k", b"v", (), TS)] * 3, base_timestamp=TS, log_append_time=True)
    with pytest.raises(RecordValidationError) as info:
        validate(buf)
    assert info.value.code == ErrorCode.INVALID_TIMESTAMP
    assert [i for i, _ in info.value.record_errors] == [0, 1, 2]


def test_timestamp_bounds() -> None:
    now = TS
    hour = 3_600_000
    buf = build_batch(
        [(b"a", b"1", (), now), (b"b", b"2", (), now - 2 * hour), (b"c", b"3", (), now + 2 * hour)]
    )
    validate(buf)  # no bounds given: nothing checked
    bounds = {"now_ms": now, "timestamp_before_max_ms": hour, "timestamp_after_max_ms": hour}
    with pytest.raises(RecordValidationError) as info:
        validate(buf, **bounds)
    assert info.value.code == ErrorCode.INVALID_TIMESTAMP
    assert [i for i, _ in info.value.record_errors] == [1, 2]
    validate(buf, now_ms=now, timestamp_before_max_ms=3 * hour)
    assert code_of(buf, now_ms=now, timestamp_after_max_ms=hour) == ErrorCode.INVALID_TIMESTAMP
    # -1 (no timestamp) is never out of range.
    validate(build_batch([(b"a", b"1", (), -1)], base_timestamp=-1), **bounds)


def test_timestamp_errors_win_over_key_errors() -> None:
    buf = build_batch([(None, b"1", (), TS), (b"b", b"2", (), 0)])
    with pytest.raises(RecordValidationError) as info:
        validate(buf, require_keys=True, now_ms=TS, timestamp_before_max_ms=1000)
    assert info.value.code == ErrorCode.INVALID_TIMESTAMP
    assert [i for i, _ in info.value.record_errors] == [0, 1]


def test_check_order_follows_kafka() -> None:
    # Too large is reported before a bad CRC, and a bad CRC before the count rules.
    buf = patch(simple(5), crc=False, records_count=0)
    assert code_of(buf, max_message_bytes=10) == ErrorCode.MESSAGE_TOO_LARGE
    assert code_of(buf) == ErrorCode.CORRUPT_MESSAGE
    # baseOffset before size.
    assert code_of(simple(base_offset=3), max_message_bytes=10) == ErrorCode.INVALID_RECORD


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_only_raise_invalid_batch(data: bytes) -> None:
    for check_crc in (True, False):
        with contextlib.suppress(InvalidBatch):
            decode_records(data, check_crc=check_crc)
    with contextlib.suppress(RecordValidationError):
        validate(data)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_records_blocks_only_raise_invalid_batch(data: bytes) -> None:
    """Random bytes behind a valid header (so the fuzzing reaches the record decoder)."""
    buf = bytearray(simple(1)[:HEADER_SIZE]) + data
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    fix = patch(buf, records_count=3, last_offset_delta=2)
    for target in (buf, fix):
        with contextlib.suppress(InvalidBatch):
            decode_records(target, check_crc=False)
        with contextlib.suppress(InvalidBatch):
            count_records(bytes(target[HEADER_SIZE:]))
        for deep in (False, True):
            with contextlib.suppress(RecordValidationError):
                validate(target, deep=deep, require_keys=deep)


def _mutate(buf: bytearray, mutation: tuple[str, int, int]) -> bytearray:
    kind, where, value = mutation
    out = bytearray(buf)
    if not out:  # an earlier cut emptied it
        return bytearray([value]) if kind == "insert" else out
    where %= len(out)
    if kind == "flip":
        out[where] ^= value or 1
    elif kind == "set":
        out[where] = value
    elif kind == "cut":
        del out[where:]
    elif kind == "insert":
        out[where:where] = bytes([value])
    else:
        del out[where]
    return out


@FUZZ
@given(
    records=st.lists(record_strategy, min_size=1, max_size=6),
    codec=st.sampled_from(CODECS),
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
            st.integers(0, 10_000),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=3,
    ),
    refresh_crc=st.booleans(),
    in_records=st.booleans(),
)
def test_mutated_batches_only_raise_their_own_errors(
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    codec: Compression,
    mutations: list[tuple[str, int, int]],
    refresh_crc: bool,
    in_records: bool,
) -> None:
    buf = build_batch(records, compression=codec)
    for mutation in mutations:
        if in_records and len(buf) > HEADER_SIZE:
            kind, where, value = mutation
            mutation = (kind, HEADER_SIZE + where % (len(buf) - HEADER_SIZE), value)
        buf = _mutate(buf, mutation)
    if refresh_crc and len(buf) >= HEADER_SIZE:
        struct.pack_into(">i", buf, 8, len(buf) - 12)
        fix_crc(buf)
    for check_crc in (True, False):
        with contextlib.suppress(InvalidBatch):
            decode_records(buf, check_crc=check_crc, max_uncompressed=1 << 20)
    for deep in (False, True):
        with contextlib.suppress(RecordValidationError):
            validate(buf, deep=deep, require_keys=deep, max_uncompressed=1 << 20)


CALLS: list[Callable[[bytes], object]] = [
    lambda b: decode_records(b, check_crc=False),
    lambda b: validate(b, deep=True),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("codec", CODECS)
def test_every_single_byte_corruption_of_the_records(
    call: Callable[[bytes], object], codec: Compression
) -> None:
    """Exhaustively: each byte of the records area replaced by 0x00, 0x7F, 0x80 and 0xFF."""
    buf = build_batch(
        [(b"key", b"value", [("h", None)], TS), (None, b"x" * 30, [], TS + 1)], compression=codec
    )
    for i in range(HEADER_SIZE, len(buf)):
        for value in (0x00, 0x7F, 0x80, 0xFF):
            broken = bytearray(buf)
            broken[i] = value
            with contextlib.suppress(InvalidBatch, RecordValidationError):
                call(bytes(fix_crc(broken)))


def test_compressed_block_of_garbage_records() -> None:
    """A valid compressed stream whose content is not records."""
    for codec in CODECS:
        if codec is Compression.NONE:
            continue
        buf = bytearray(simple(1)[:HEADER_SIZE])
        buf += compress(codec, b"\x7f" * 50)
        struct.pack_into(">h", buf, 21, int(codec))
        struct.pack_into(">i", buf, 8, len(buf) - 12)
        fix_crc(buf)
        with pytest.raises(InvalidBatch) as info:
            decode_records(buf)
        assert not info.value.corrupt
        assert code_of(buf) == ErrorCode.INVALID_RECORD
