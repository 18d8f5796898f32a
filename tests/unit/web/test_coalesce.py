"""riverbed.web.coalesce: a connection's writes of one loop turn leave in one transport write,
in order; close sends what is held first; uvicorn serves plain, streamed and WebSocket
responses through it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from riverbed.web import HttpServer, create_app
from riverbed.web.coalesce import CoalescingTransport

PROTOCOL = "riverbed.web.coalesce:CoalescingHttpToolsProtocol"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_turn_leave_in_one_write_in_order() -> None:
    async def main() -> None:
        raw = FakeTransport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
        t.write(b"")
        t.write(memoryview(b'{"ok":1}'))
        assert raw.writes == [] and t.get_write_buffer_size() == len(b"HTTP/1.1 202 Accepted\r\n\r\n") + 8
        await asyncio.sleep(0)  # the rest of the turn: the flush callback runs
        assert raw.writes == [b'HTTP/1.1 202 Accepted\r\n\r\n{"ok":1}']
        t.writelines([b"a", b"b"])
        await asyncio.sleep(0)
        assert raw.writes[1:] == [b"ab"]
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's

    asyncio.run(main())


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def main() -> None:
        raw = FakeTransport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"last words")
        t.close()
        assert raw.writes == [b"last words"] and raw.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing (and writes nothing)
        assert raw.writes == [b"last words"]
        raw2 = FakeTransport()
        t2 = CoalescingTransport(raw2, asyncio.get_running_loop())  # type: ignore[arg-type]
        t2.write(b"never")
        t2.abort()
        await asyncio.sleep(0)
        assert raw2.writes == [] and raw2.aborted

    asyncio.run(main())


def test_uvicorn_serves_keep_alive_streams_and_websockets_through_it() -> None:
    async def plain(request: Request) -> Response:
        return Response(await request.body(), media_type="text/plain")

    async def stream(request: Request) -> Response:
        async def chunks() -> Any:
            for i in range(3):
                yield f"chunk{i};".encode()
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="text/plain")

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            text = await ws.receive_text()
            await ws.send_text(text.upper())
            await ws.send_text(text)

    app = create_app([Route("/plain", plain, methods=["POST"]), Route("/stream", stream), WebSocketRoute("/ws", echo)])
    server = HttpServer(app, "127.0.0.1", 0, http=PROTOCOL).start_in_thread()
    try:
        with httpx.Client(base_url=server.url) as client:  # one keep-alive connection
            for i in range(5):
                r = client.post("/plain", content=f"body {i}".encode())
                assert r.status_code == 200 and r.text == f"body {i}"
            assert client.get("/stream").text == "chunk0;chunk1;chunk2;"
        # two pipelined requests on one raw socket: both answers, in order
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nA"
                      b"POST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nB")
            data = b""
            while chunk := s.recv(65536):  # the server closes after the second answer
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.index(b"\r\n\r\nA") < data.index(b"\r\n\r\nB")
        with connect(server.url.replace("http", "ws") + "/ws") as ws:
            ws.send("hi")
            assert [ws.recv(timeout=5), ws.recv(timeout=5)] == ["HI", "hi"]
    finally:
        server.stop()
