from __future__ import annotations

import socket

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from riverbed.web import HttpServer, JsonError, create_app, json_body, json_response


async def echo(request: Request) -> Response:
    return json_response(await json_body(request, max_bytes=100))


def test_server_socket_is_tcp_so_asyncio_sets_nodelay_on_connections() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with proto 0 each
    # response waited for the client's delayed ACK (~40 ms a request, measured)
    server = HttpServer(create_app([]), "127.0.0.1", 0)
    try:
        assert server.sock.proto == socket.IPPROTO_TCP
    finally:
        server.sock.close()


def test_json_bodies_errors_and_limits() -> None:
    async def boom(request: Request) -> Response:
        raise JsonError(422, 42201, "bad schema")

    server = HttpServer(create_app([Route("/echo", echo, methods=["POST"]), Route("/boom", boom)]), "127.0.0.1", 0).start_in_thread()
    try:
        with httpx.Client(base_url=server.url) as c:
            assert c.post("/echo", json={"a": 1}).json() == {"a": 1}
            r = c.post("/echo", content=b"x" * 101)
            assert (r.status_code, r.json()["error_code"]) == (413, 413)
            r = c.post("/echo", content=b"{")
            assert (r.status_code, r.json()["error_code"]) == (400, 400)
            r = c.post("/echo", content=b"")
            assert r.status_code == 400
            r = c.get("/boom")
            assert (r.status_code, r.json()) == (422, {"error_code": 42201, "message": "bad schema"})
            r = c.get("/nothing")
            assert (r.status_code, r.json()["error_code"]) == (404, 404)
            r = c.delete("/echo")
            assert r.status_code == 405
    finally:
        server.stop()
