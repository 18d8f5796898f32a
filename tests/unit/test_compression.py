"""Codecs of RecordBatch v2: round trips, snappy xerial framing, truncation, garbage and
decompression bombs (which must be refused without producing more than ``max_size`` bytes)."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverbed.protocol.records.batch import InvalidBatch
from riverbed.protocol.records.compression import (
    XERIAL_MAGIC,
    Compression,
    CompressionError,
    DecompressionLimitExceeded,
    compress,
    decompress,
)

CODECS = list(Compression)
COMPRESSED = [c for c in Compression if c is not Compression.NONE]
MiB = 1024 * 1024
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def xerial(*blocks: bytes, version: int = 1, compat: int = 1) -> bytes:
    """snappy-java stream framing, built by hand."""
    out = bytearray(XERIAL_MAGIC)
    out += struct.pack(">ii", version, compat)
    for block in blocks:
        raw = bytes(cramjam.snappy.compress_raw(block))
        out += struct.pack(">i", len(raw)) + raw
    return bytes(out)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("data", [b"", b"a", b"hello world" * 1000, bytes(range(256)) * 64])
def test_round_trip(codec: Compression, data: bytes) -> None:
    assert decompress(codec, compress(codec, data), max_size=len(data)) == data


@FUZZ
@given(codec=st.sampled_from(CODECS), data=st.binary(max_size=5000))
def test_round_trip_random(codec: Compression, data: bytes) -> None:
    packed = compress(codec, data)
    assert decompress(codec, packed, max_size=len(data)) == data
    assert decompress(codec, memoryview(packed), max_size=len(data) + 10) == data


@pytest.mark.parametrize("codec", COMPRESSED)
def test_exact_limit_is_allowed_one_less_is_not(codec: Compression) -> None:
    data = b"0123456789" * 5000
    packed = compress(codec, data)
    assert decompress(codec, packed, max_size=len(data)) == data
    with pytest.raises(DecompressionLimitExceeded):
        decompress(codec, packed, max_size=len(data) - 1)


def test_codec_ids_match_kafka() -> None:
    assert [int(c) for c in Compression] == [0, 1, 2, 3, 4]
    assert [c.name for c in Compression] == ["NONE", "GZIP", "SNAPPY", "LZ4", "ZSTD"]


@pytest.mark.parametrize("codec", [5, 6, 7, -1])
def test_unknown_codec(codec: int) -> None:
    with pytest.raises(CompressionError):
        decompress(codec, b"abc", max_size=100)
    with pytest.raises(CompressionError):
        compress(codec, b"abc")


def test_none_respects_limit() -> None:
    assert decompress(Compression.NONE, b"abc", max_size=3) == b"abc"
    with pytest.raises(DecompressionLimitExceeded):
        decompress(Compression.NONE, b"abcd", max_size=3)


def test_compression_error_is_corrupt_invalid_batch() -> None:
    with pytest.raises(InvalidBatch) as info:
        decompress(Compression.GZIP, b"not gzip", max_size=100)
    assert info.value.corrupt
    assert isinstance(info.value, CompressionError)


# --------------------------------------------------------------------------- formats


def test_gzip_writes_a_gzip_stream_readable_by_the_stdlib() -> None:
    packed = compress(Compression.GZIP, b"payload" * 100)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == b"payload" * 100


def test_gzip_accepts_zlib_and_concatenated_members() -> None:
    assert decompress(Compression.GZIP, zlib.compress(b"zlib data"), max_size=100) == b"zlib data"
    two = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decompress(Compression.GZIP, two, max_size=100) == b"first second"
    with pytest.raises(DecompressionLimitExceeded):
        decompress(Compression.GZIP, two, max_size=11)


def test_gzip_rejects_trailing_garbage_and_bad_crc() -> None:
    packed = gzip.compress(b"data" * 10)
    with pytest.raises(CompressionError):
        decompress(Compression.GZIP, packed + b"junk", max_size=1000)
    broken = bytearray(packed)
    broken[-8] ^= 0xFF  # gzip trailer CRC32
    with pytest.raises(CompressionError):
        decompress(Compression.GZIP, bytes(broken), max_size=1000)


def test_snappy_writes_raw_snappy() -> None:
    data = b"raw snappy" * 50
    packed = compress(Compression.SNAPPY, data)
    assert not packed.startswith(XERIAL_MAGIC)
    assert bytes(cramjam.snappy.decompress_raw(packed)) == data


def test_snappy_xerial_framing() -> None:
    blocks = [b"a" * 40000, b"hello xerial", b"", bytes(range(256)) * 10]
    framed = xerial(*blocks)
    assert decompress(Compression.SNAPPY, framed, max_size=10**6) == b"".join(blocks)
    # Header-only stream: no blocks, no data.
    assert decompress(Compression.SNAPPY, xerial(), max_size=10) == b""
    # The budget spans all blocks.
    with pytest.raises(DecompressionLimitExceeded):
        decompress(Compression.SNAPPY, framed, max_size=40010)


def test_snappy_xerial_as_written_by_the_java_client() -> None:
    """snappy-java writes version 1, compatible version 1 and 32 KiB blocks."""
    data = bytes(i % 251 for i in range(100_000))
    blocks = [data[i : i + 32768] for i in range(0, len(data), 32768)]
    framed = xerial(*blocks, version=1, compat=1)
    assert decompress(Compression.SNAPPY, framed, max_size=len(data)) == data


@pytest.mark.parametrize(
    "mangle",
    [
        lambda f: f[:-1],  # truncated block
        lambda f: f[:18],  # truncated length field
        lambda f: f[:16] + struct.pack(">i", -5) + f[20:],  # negative block length
        lambda f: f[:16] + struct.pack(">i", 10**6) + f[20:],  # block length past the end
        lambda f: f + b"\x00\x00\x00\x03abc",  # garbage block
    ],
)
def test_snappy_xerial_broken(mangle: object) -> None:
    framed = xerial(b"some data to frame" * 20, b"second block")
    assert callable(mangle)
    with pytest.raises(CompressionError):
        decompress(Compression.SNAPPY, mangle(framed), max_size=10**6)


def test_snappy_declared_length_checked_before_decompressing() -> None:
    # A raw snappy block claiming 4 GiB - 1 bytes: refused from its 5-byte header alone.
    bomb = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10
    with pytest.raises(DecompressionLimitExceeded):
        decompress(Compression.SNAPPY, bomb, max_size=MiB)
    # Declared length not matching the content.
    good = compress(Compression.SNAPPY, b"x" * 100)
    lying = b"\x90\x01" + good[1:]  # claims 144 bytes
    with pytest.raises(CompressionError):
        decompress(Compression.SNAPPY, lying, max_size=MiB)


def test_lz4_is_the_frame_format_and_accepts_concatenated_frames() -> None:
    packed = compress(Compression.LZ4, b"lz4 data" * 100)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    assert lz4.frame.decompress(packed) == b"lz4 data" * 100
    two = lz4.frame.compress(b"one ") + lz4.frame.compress(b"two")
    assert decompress(Compression.LZ4, two, max_size=100) == b"one two"
    for options in ({"block_checksum": True}, {"content_checksum": True}, {"store_size": False}):
        framed = lz4.frame.compress(b"options" * 1000, **options)
        assert decompress(Compression.LZ4, framed, max_size=7000) == b"options" * 1000


def test_zstd_variants() -> None:
    data = b"zstd data " * 5000
    streaming = zstandard.ZstdCompressor().compressobj()
    no_size = streaming.compress(data) + streaming.flush()
    assert zstandard.get_frame_parameters(no_size).content_size in (
        0,
        zstandard.CONTENTSIZE_UNKNOWN,
    )
    checksummed = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    skippable = struct.pack("<II", 0x184D2A5A, 3) + b"xyz"
    for packed in (no_size, checksummed, skippable + checksummed + skippable):
        assert decompress(Compression.ZSTD, packed, max_size=len(data)) == data
    two = compress(Compression.ZSTD, b"one ") + compress(Compression.ZSTD, b"two")
    assert decompress(Compression.ZSTD, two, max_size=100) == b"one two"
    with pytest.raises(CompressionError):
        decompress(Compression.ZSTD, checksummed[:-2], max_size=len(data))
    with pytest.raises(CompressionError):
        decompress(Compression.ZSTD, checksummed + b"\x00", max_size=len(data))
    with pytest.raises(CompressionError):
        decompress(Compression.ZSTD, b"", max_size=len(data))


# --------------------------------------------------------------------------- broken input


@pytest.mark.parametrize("codec", COMPRESSED)
def test_every_truncation_is_refused(codec: Compression) -> None:
    data = bytes(i * 7 % 256 for i in range(3000)) * 3
    packed = compress(codec, data)
    for cut in range(len(packed)):
        try:
            out = decompress(codec, packed[:cut], max_size=len(data))
        except CompressionError:
            continue
        # A raw snappy or gzip prefix can never decode to the full data; anything returned
        # must at least not be the complete input.
        raise AssertionError(f"{codec.name}: truncation at {cut} accepted ({len(out)} bytes)")


@FUZZ
@given(codec=st.sampled_from(COMPRESSED), data=st.binary(max_size=300))
def test_garbage_only_raises_compression_error(codec: Compression, data: bytes) -> None:
    try:
        out = decompress(codec, data, max_size=64 * 1024)
    except CompressionError:
        return
    assert len(out) <= 64 * 1024


@FUZZ
@given(
    codec=st.sampled_from(COMPRESSED),
    data=st.binary(min_size=1, max_size=2000),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_mutated_streams_only_raise_compression_error(
    codec: Compression, data: bytes, flips: list[tuple[int, int]]
) -> None:
    packed = bytearray(compress(codec, data * 3))
    for where, xor in flips:
        packed[where % len(packed)] ^= xor
    try:
        out = decompress(codec, bytes(packed), max_size=10_000)
    except CompressionError:
        return
    assert len(out) <= 10_000


# --------------------------------------------------------------------------- bombs


def _bomb(codec: Compression, total: int) -> bytes:
    """``total`` zero bytes compressed with ``codec`` without materialising them all."""
    chunk = bytes(MiB)
    n = total // MiB
    if codec is Compression.GZIP:
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(co.compress(chunk) for _ in range(n)) + co.flush()
    if codec is Compression.LZ4:
        lc = lz4.frame.LZ4FrameCompressor()
        return bytes(lc.begin() + b"".join(lc.compress(chunk) for _ in range(n)) + lc.flush())
    if codec is Compression.ZSTD:
        zc = zstandard.ZstdCompressor().compressobj()
        return b"".join(zc.compress(chunk) for _ in range(n)) + bytes(zc.flush())
    # Raw snappy has a 32-bit length header and a ~21:1 best ratio: one real block.
    return bytes(cramjam.snappy.compress_raw(bytes(total)))


@pytest.fixture(scope="module")
def bombs() -> dict[Compression, bytes]:
    out: dict[Compression, bytes] = {c: _bomb(c, 100 * MiB) for c in COMPRESSED}
    out_x = bytearray(XERIAL_MAGIC + struct.pack(">ii", 1, 1))
    block = bytes(cramjam.snappy.compress_raw(bytes(4 * MiB)))
    for _ in range(25):
        out_x += struct.pack(">i", len(block)) + block
    out[Compression.NONE] = bytes(out_x)  # (stored under NONE: the xerial snappy bomb)
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_decompression_bomb_is_refused_within_limit(
    codec: Compression, bombs: dict[Compression, bytes]
) -> None:
    packed = bombs[codec]
    real_codec = Compression.SNAPPY if codec is Compression.NONE else codec
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimitExceeded):
            decompress(real_codec, packed, max_size=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python-level allocations stay within a small multiple of the 1 MiB limit (plus the
    # input), far from the 100 MiB the data would expand to.
    assert peak < 3 * MiB + len(packed), (real_codec.name, peak)
    # (how long the refusal takes is measured by benchmarks/micro_bounds.py)
