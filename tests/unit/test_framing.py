"""FrameDecoder: size-prefixed frames out of a byte stream, however the reads split it,
through the BufferedProtocol path (get_buffer / buffer_updated) and through receive_data."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.framing import FrameDecoder, FrameTooLarge

SIZES = st.one_of(st.integers(0, 40), st.integers(FrameDecoder.OWN_BUFFER - 2, FrameDecoder.OWN_BUFFER + 2),
                  st.integers(0, 3 * FrameDecoder.STAGE))


def framed(bodies: list[bytes]) -> bytes:
    return b"".join(struct.pack(">i", len(b)) + b for b in bodies)


def bodies_of(sizes: list[int]) -> list[bytes]:
    return [bytes((i * 7 + j) & 0xFF for j in range(n)) for i, n in enumerate(sizes)]


def feed_buffered(dec: FrameDecoder, data: bytes, reads: list[int]) -> list[bytes]:
    """As a transport does: ask for a buffer, write at most the read size into it."""
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        buf = dec.get_buffer(-1)
        assert len(buf) > 0
        want = reads[i % len(reads)] if reads else len(data)
        i += 1
        n = min(len(buf), want, len(data) - pos)
        buf[:n] = data[pos : pos + n]
        del buf  # a transport drops its view after the read
        dec.buffer_updated(n)
        pos += n
        while (f := dec.next_frame()) is not None:
            assert isinstance(f, bytearray)
            out.append(bytes(f))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(SIZES, max_size=12), st.lists(st.integers(1, 70_000), max_size=8))
def test_frames_survive_any_split(sizes: list[int], reads: list[int]) -> None:
    bodies = bodies_of(sizes)
    assert feed_buffered(FrameDecoder(1 << 20), framed(bodies), reads) == bodies
    dec = FrameDecoder(1 << 20)
    data = framed(bodies)
    got: list[bytes] = []
    chunk = reads[0] if reads else 1000
    for i in range(0, len(data), chunk):
        dec.receive_data(data[i : i + chunk])
        while (f := dec.next_frame()) is not None:
            got.append(bytes(f))
    assert got == bodies
    assert dec.buffered() == 0


def test_a_large_frame_is_read_into_its_own_buffer() -> None:
    dec = FrameDecoder(1 << 20)
    body = bytes(range(256)) * 400  # 102,400 bytes
    data = framed([body])
    buf = dec.get_buffer(-1)
    buf[:100] = data[:100]
    dec.buffer_updated(100)
    rest = dec.get_buffer(-1)
    assert len(rest) == len(body) - 96  # exactly the rest of the frame, read in place
    rest[:] = data[100:]
    dec.buffer_updated(len(rest))
    assert dec.next_frame() == body and dec.next_frame() is None


def test_a_hostile_size_allocates_only_what_arrives() -> None:
    dec = FrameDecoder(100 << 20)
    dec.receive_data(struct.pack(">i", 90 << 20) + b"x" * 10)
    assert len(dec.get_buffer(-1)) <= FrameDecoder.ALLOCATE_WHOLE  # not 90 MiB
    body = b"y" * (3 << 20)
    dec2 = FrameDecoder(100 << 20)
    assert feed_buffered(dec2, framed([body, b"after"]), [65536]) == [body, b"after"]


def test_too_large_is_raised_after_the_frames_before_it() -> None:
    dec = FrameDecoder(100)
    dec.receive_data(framed([b"ok"]) + struct.pack(">i", 101) + b"zz")
    assert dec.next_frame() == b"ok"
    with pytest.raises(FrameTooLarge):
        dec.next_frame()
    dec.receive_data(b"more")  # ignored: the connection is closing
    with pytest.raises(DecodeError):
        dec.next_frame()
    neg = FrameDecoder(100)
    neg.receive_data(struct.pack(">i", -1))
    with pytest.raises(FrameTooLarge):
        neg.next_frame()


def test_the_server_reads_pipelined_and_large_frames() -> None:
    """A real asyncio server (BufferedProtocol) answers every frame of one write, small and large."""
    from riverbed.server.handler import ConnectionInfo, Reply
    from riverbed.server.server import KafkaServer, ServerConfig

    class Echo:
        def handle(self, conn: ConnectionInfo, frame: bytearray) -> Reply:
            return [struct.pack(">i", len(frame)) + bytes(frame)]  # type: ignore[return-value]

        def connection_closed(self, conn: ConnectionInfo) -> None:
            pass

    async def main() -> None:
        server = KafkaServer(Echo(), ServerConfig(port=0))  # type: ignore[arg-type]
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            bodies = bodies_of([5, 20_000, 0, 300_000, 7, 2_000_000, 9])
            writer.write(framed(bodies))
            await writer.drain()
            for b in bodies:
                (n,) = struct.unpack(">i", await reader.readexactly(4))
                assert await reader.readexactly(n) == b
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())
