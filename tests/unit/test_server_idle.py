"""connections.max.idle.ms in the asyncio server: a connection that neither receives nor
sends for the idle timeout is closed; traffic, or a request still in progress, keeps it."""

from __future__ import annotations

import asyncio
import struct

from riverbed.server.handler import ConnectionInfo, Reply
from riverbed.server.server import KafkaServer, ServerConfig

IDLE = 0.3


class EchoHandler:
    """Answers each frame with the same bytes; a frame starting with b"slow" is answered
    after ``slow_s`` seconds."""

    def __init__(self, slow_s: float = 0.0) -> None:
        self.slow_s = slow_s
        self.closed: list[int] = []

    def handle(self, conn: ConnectionInfo, frame: bytearray) -> Reply:
        reply = [struct.pack(">i", len(frame)) + bytes(frame)]
        if bytes(frame).startswith(b"slow"):

            async def later() -> list[bytes]:
                await asyncio.sleep(self.slow_s)
                return reply

            return later()  # type: ignore[return-value]
        return reply  # type: ignore[return-value]

    def connection_closed(self, conn: ConnectionInfo) -> None:
        self.closed.append(conn.connection_id)


async def serve(handler: EchoHandler, idle: float | None) -> KafkaServer:
    server = KafkaServer(handler, ServerConfig(port=0, idle_timeout=idle))
    await server.start()
    return server


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bytes:
    writer.write(struct.pack(">i", len(payload)) + payload)
    await writer.drain()
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def test_silent_connection_is_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        handler = EchoHandler()
        server = await serve(handler, IDLE)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # taken before the last exchange: the server's last activity comes after it, so
            # the close is at least IDLE later (a slow machine only makes it later)
            t0 = asyncio.get_running_loop().time()
            assert await roundtrip(reader, writer, b"hello") == b"hello"
            assert await asyncio.wait_for(reader.read(1), 60) == b""  # EOF: the broker closed it
            assert asyncio.get_running_loop().time() - t0 >= IDLE
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_traffic_keeps_a_connection_open() -> None:
    async def main() -> None:
        handler = EchoHandler()
        # a 3 s timeout and pings 0.1 s apart for 3.5 s in all: the gaps stay far below the
        # timeout even when a loaded machine stretches a 0.1 s sleep many times over
        server = await serve(handler, 3.0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            for i in range(35):
                assert await roundtrip(reader, writer, b"ping %d" % i) == b"ping %d" % i
                await asyncio.sleep(0.1)
            assert not handler.closed
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_a_request_in_progress_is_not_idle() -> None:
    async def main() -> None:
        handler = EchoHandler(slow_s=IDLE * 3)
        server = await serve(handler, IDLE)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # a long poll longer than the idle timeout still gets its answer
            assert await asyncio.wait_for(roundtrip(reader, writer, b"slow poll"), 5) == b"slow poll"
            assert await asyncio.wait_for(reader.read(1), 5) == b""  # then idle: closed
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_no_idle_timeout_keeps_connections() -> None:
    async def main() -> None:
        handler = EchoHandler()
        server = await serve(handler, None)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await asyncio.sleep(IDLE * 3)
            assert await roundtrip(reader, writer, b"still here") == b"still here"
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())
