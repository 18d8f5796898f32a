"""The asyncio server: one KafkaConnection protocol object per TCP connection.

Requests on a connection pipeline (a client may send many before reading), but responses
are written strictly in request order. The transport owns backpressure: it stops reading a
socket when too many requests are in flight on it or when the peer does not drain its
responses, and resumes once they complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.framing import FrameDecoder
from riverbed.protocol.primitives import Buffer

from .handler import CloseConnection, ConnectionInfo, Handler, ReplyThenClose
from .stats import RequestStats

log = logging.getLogger("riverbed.server")

_ids = itertools.count(1)


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    max_request_size: int = 100 * 1024 * 1024  # socket.request.max.bytes
    max_inflight_per_connection: int = 100
    shutdown_timeout: float = 10.0
    listener_name: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None  # SSL and SASL_SSL listeners
    # mTLS: the principal ("User:<name>") of a client from its verified certificate (DER;
    # raises to refuse the client); the connection's state["principal"] is set from it
    principal_from_certificate: Callable[[bytes], str] | None = None
    # SASL listeners: the largest frame accepted until the handler has authenticated the
    # connection (set state["principal"]): Kafka's sasl.server.max.receive.size, 512 KiB.
    # None: no separate limit before authentication.
    unauthenticated_max_frame: int | None = None
    # SASL listeners: close a connection that has not authenticated within this many
    # seconds (a client that connects and says nothing holds no resources for ever)
    authentication_timeout: float | None = None
    # close a connection with no request in progress that has neither received nor sent
    # anything for this many seconds (Kafka's connections.max.idle.ms); None: never
    idle_timeout: float | None = None


class _Slot:
    __slots__ = ("done", "key", "local", "remote", "reply", "t0")

    def __init__(self, key: int, t0: float, local: float) -> None:
        self.done = False
        self.reply: list[Buffer] | None = None
        self.key = key  # request timings (stats.RequestStats)
        self.t0 = t0
        self.local = local
        self.remote: float | None = None


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, server: KafkaServer) -> None:
        self.server = server
        self.handler = server.handler
        self.decoder = FrameDecoder(server.config.max_request_size)
        self.transport: asyncio.Transport | None = None
        self.info: ConnectionInfo | None = None
        self.pending: deque[_Slot] = deque()
        self.tasks: set[asyncio.Future[Any]] = set()
        self.read_paused = False
        self.write_paused = False
        self.closed = False
        self.last_activity = 0.0  # loop time of the last bytes received or sent
        self.clock = time.monotonic  # the loop's clock (set in connection_made)

    # ---- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = self.transport.get_extra_info("peername")
        self.info = ConnectionInfo(
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            listener=self.server.config.listener_name,
            connection_id=next(_ids),
        )
        self.transport.set_write_buffer_limits(high=4 * 1024 * 1024, low=1024 * 1024)
        self.server.connections.add(self)
        self.server.connections_accepted += 1
        config = self.server.config
        loop = asyncio.get_running_loop()
        self.clock = loop.time
        self.last_activity = loop.time()
        if config.authentication_timeout is not None:
            loop.call_later(config.authentication_timeout, self._authentication_deadline)
        if config.idle_timeout is not None:
            loop.call_later(config.idle_timeout, self._idle_check)
        if config.ssl_context is not None and config.principal_from_certificate is not None:
            cert = self.transport.get_extra_info("peercert")
            ssl_object = self.transport.get_extra_info("ssl_object")
            if cert and cert.get("subject") and ssl_object is not None:  # a verified certificate
                try:
                    self.info.state["principal"] = config.principal_from_certificate(ssl_object.getpeercert(binary_form=True))
                except Exception as exc:
                    log.warning("refusing TLS client %s: %s", self.info.peer, exc)
                    self.server.failed_authentications += 1
                    self.close()

    def _authentication_deadline(self) -> None:
        if not self.closed and self.info is not None and "principal" not in self.info.state:
            log.info("closing %s: not authenticated in time", self.info.peer)
            self.close()

    def _idle_check(self) -> None:
        """Close the connection when it has been idle for ``idle_timeout``; otherwise look
        again when it could first be (one timer per connection, re-armed only on expiry)."""
        timeout = self.server.config.idle_timeout
        if self.closed or timeout is None:
            return
        loop = asyncio.get_running_loop()
        if self.pending:  # a request in progress (a long poll, say) is not idleness
            loop.call_later(min(timeout, 1.0), self._idle_check)
            return
        due = self.last_activity + timeout
        if loop.time() < due:
            loop.call_at(due, self._idle_check)
            return
        log.info("closing %s: idle for %.0f s (connections.max.idle.ms)", self.info.peer if self.info else "?", timeout)
        self.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        # the transport reads into the decoder's buffers (no bytes object per read, no copy
        # into a receive buffer: see FrameDecoder)
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        self.last_activity = self.clock()
        decoder = self.decoder
        limit = self.server.config.unauthenticated_max_frame
        if limit is not None and self.info is not None:
            authenticated = "principal" in self.info.state
            decoder.max_frame_size = self.server.config.max_request_size if authenticated else limit
        decoder.buffer_updated(nbytes)
        self._frames()

    def _frames(self) -> None:
        decoder = self.decoder
        try:
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    break
                self._dispatch(frame)
                if self.closed:
                    return
        except DecodeError as exc:
            log.warning("closing %s: %s", self.info.peer if self.info else "?", exc)
            self.close()
            return
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        self.pending.clear()
        self.server.connections.discard(self)
        if self.info is not None:
            try:
                self.handler.connection_closed(self.info)
            except Exception:  # pragma: no cover - defensive
                log.exception("connection_closed hook failed")
        self.server._connection_gone()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    # ---- request handling
    def _dispatch(self, frame: bytearray) -> None:
        assert self.info is not None
        clock = time.perf_counter  # the loop's clock may tick in ms (uvloop)
        t0 = clock()
        try:
            reply = self.handler.handle(self.info, frame)
        except CloseConnection as exc:
            log.info("closing %s: %s", self.info.peer, exc)
            self.close()
            return
        except Exception:
            log.exception("handler failed; closing %s", self.info.peer)
            self.close()
            return
        local = clock() - t0
        # the API key; a raw SASL token (SaslHandshake v0) has none and may be that short
        key = frame[0] << 8 | frame[1] if len(frame) > 1 else -1
        if reply is None or isinstance(reply, list):
            if not self.pending:
                if reply is not None:
                    self._write(reply)
                self.server.request_stats.answered(key, local, local, None)
                return
            slot = _Slot(key, t0, local)
            slot.done = True
            slot.reply = reply
            self.pending.append(slot)
            return
        slot = _Slot(key, t0, local)
        self.pending.append(slot)
        # a future (produce) is waited on as it is; a coroutine gets a task
        task = reply if isinstance(reply, asyncio.Future) else asyncio.ensure_future(_as_coroutine(reply))
        self.tasks.add(task)
        task.add_done_callback(lambda t, s=slot: self._completed(t, s))  # type: ignore[misc]

    def _completed(self, task: asyncio.Future[Any], slot: _Slot) -> None:
        self.tasks.discard(task)
        if self.closed or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, CloseConnection):
                log.error("handler failed; closing connection", exc_info=exc)
            self.close()
            return
        slot.reply = task.result()
        slot.done = True
        slot.remote = time.perf_counter() - slot.t0 - slot.local
        self._flush()

    def _flush(self) -> None:
        pending = self.pending
        stats = self.server.request_stats
        while pending and pending[0].done:
            slot = pending.popleft()
            if slot.reply is not None:
                self._write(slot.reply)
            stats.answered(slot.key, time.perf_counter() - slot.t0, slot.local, slot.remote)
        self._update_reading()
        if not pending:
            self.server._maybe_drained()

    def _write(self, chunks: list[Buffer]) -> None:
        assert self.transport is not None
        if self.closed:
            return
        self.last_activity = self.clock()
        if len(chunks) == 1:
            self.transport.write(chunks[0])
        else:
            self.transport.writelines(chunks)
        if isinstance(chunks, ReplyThenClose):
            self.close()  # the transport still sends what is buffered

    def _update_reading(self) -> None:
        if self.transport is None or self.closed:
            return
        should_pause = self.write_paused or len(self.pending) >= self.server.config.max_inflight_per_connection
        if should_pause and not self.read_paused:
            self.transport.pause_reading()
            self.read_paused = True
        elif not should_pause and self.read_paused and not self.server.stopping:
            self.transport.resume_reading()
            self.read_paused = False

    def idle(self) -> bool:
        return not self.pending

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _as_coroutine(aw: Awaitable[Any]) -> Any:
    return await aw


class KafkaServer:
    """Listens on one address and serves the Kafka protocol through ``handler``."""

    def __init__(self, handler: Handler, config: ServerConfig) -> None:
        self.handler = handler
        self.config = config
        self.connections: set[KafkaConnection] = set()
        self.stopping = False
        # for the metrics endpoint (read when scraped)
        self.request_stats = RequestStats()
        self.connections_accepted = 0
        self.failed_authentications = 0  # TLS clients refused by principal_from_certificate
        self._server: asyncio.base_events.Server | None = None
        self._drained: asyncio.Event | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: KafkaConnection(self),
            self.config.host,
            self.config.port,
            reuse_address=True,
            backlog=1024,
            ssl=self.config.ssl_context,
            ssl_handshake_timeout=10.0 if self.config.ssl_context is not None else None,
        )

    async def stop(self) -> None:
        """Stop accepting, stop reading, let in-flight requests answer (bounded by
        shutdown_timeout), then close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None and not conn.read_paused and not conn.closed:
                conn.transport.pause_reading()
                conn.read_paused = True
        self._drained = asyncio.Event()
        self._maybe_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), self.config.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown timeout: closing %d busy connections", len(self.connections))
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _maybe_drained(self) -> None:
        if self._drained is not None and all(c.idle() for c in self.connections):
            self._drained.set()

    def _connection_gone(self) -> None:
        self._maybe_drained()
