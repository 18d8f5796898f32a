"""Serving an ASGI app with uvicorn, standalone (blocking) or in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

try:  # libuv's event loop: about a third less CPU per request than asyncio's own
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
    uvloop = None  # type: ignore[assignment]


def run_loop(coro: Any) -> Any:
    """Run `coro` to completion on a new event loop (uvloop's where installed)."""
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


class HttpServer:
    """uvicorn on HOST:PORT (port 0: a free port, read `port` after start)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", **uvicorn_options: Any) -> None:
        """`uvicorn_options` go to uvicorn.Config as they are (``ws="wsproto"``, ``ws_max_size``...)."""
        self.host = host
        # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP
        # (with proto 0 every response waited ~40 ms for a delayed ACK)
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        # httptools' parser where installed (it is a dependency): less CPU per request than h11
        options: dict[str, Any] = {"access_log": False, "lifespan": "on", "timeout_graceful_shutdown": 5, "http": "auto", **uvicorn_options}
        self.config = uvicorn.Config(app, log_level=log_level, **options)
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def start_in_thread(self, timeout: float = 30.0) -> HttpServer:
        self._thread = threading.Thread(target=lambda: run_loop(self.serve()), name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
