"""uvicorn's httptools protocol with its writes coalesced: what a connection writes during one
turn of the event loop leaves in one ``send``.

uvicorn writes a response's head (``http.response.start``) and its body (``http.response.body``)
with two ``transport.write`` calls; a transport writes at once when its buffer is empty, so a
small response costs two ``send`` syscalls on the server and two segments for the client to
read. Here the first write of a turn is held and a callback scheduled with ``call_soon`` sends
everything written up to then in one call: one syscall per response (and per batch of
WebSocket frames or SSE events written in one turn). Ordering, flow control (the transport
still pauses and resumes the protocol) and close (held bytes go first) are unchanged; the
delay is the rest of the current loop turn.

Select it with ``uvicorn.Config(http="riverbed.web.coalesce:CoalescingHttpToolsProtocol")``
(the gateway does, see ``GatewayConfig.server_options``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport proxy whose ``write`` holds bytes until the end of the loop turn; every
    other attribute is the wrapped transport's."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self._held
        if held is None:
            self._held = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            held.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is held (one write); nothing if the transport is closing (as a write to a
        closed transport would be lost anyway)."""
        held, self._held = self._held, None
        if not held or self._transport.is_closing():
            return
        self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._held or ())

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a :class:`CoalescingTransport` (so do the WebSocket
    protocols it upgrades to: they are handed the same transport)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
