"""Shared pieces of the gateway tests: a gateway on a real broker over real HTTP, and a reader
of what landed on a topic."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from riverbed.gateway import Gateway, GatewayConfig
from riverbed.web import HttpServer


@contextmanager
def running_gateway(
    doc: Mapping[str, Any], bootstrap: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[Gateway, str]]:
    doc = {**doc, "cluster": {**doc.get("cluster", {}), "bootstrap.servers": bootstrap}}
    gw = Gateway(GatewayConfig.from_mapping(doc, env or {}))
    server = HttpServer(gw.app, **gw.config.server_options()).start_in_thread()
    try:
        yield gw, server.url
    finally:
        gw.drop_push_clients()
        server.stop()


def read_topic(
    bootstrap: str, topic: str, expect: int, timeout: float = 20.0, settle: float = 0.0
) -> list[Any]:
    """Every record of `topic` (partition 0) once at least `expect` are there, then `settle`
    more seconds of reading (to see extra records that should not be there)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        until: float | None = None
        while time.monotonic() < deadline:
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    out.append(m)
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(str(m.error()))
            if len(out) >= expect:
                until = until or time.monotonic() + settle
                if time.monotonic() >= until:
                    break
        return out
    finally:
        c.close()


class SseReader:
    """An SSE client on a thread over a plain socket (so close() interrupts it at once): collects
    (event, id, data) until the stream ends."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None) -> None:
        import socket
        import threading
        from urllib.parse import urlsplit

        self.events: list[tuple[str, str | None, Any]] = []
        self.status: int | None = None
        self.ended = False
        self.error: Exception | None = None
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        self.sock.settimeout(None)
        target = u.path + ("?" + u.query if u.query else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        self._file = f = self.sock.makefile("rb")
        status = f.readline()
        self.status = int(status.split()[1])
        chunked = False
        while (line := f.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        if not chunked:
            yield f.read()
            return
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                return
            yield f.read(size)
            f.readline()

    def _run(self) -> None:
        import json

        try:
            buf = b""
            for chunk in self._chunks():
                if self.status != 200:
                    return
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    event, eid, data = "message", None, []
                    for line in block.decode().split("\n"):
                        if line.startswith("data: "):
                            data.append(line[6:])
                        elif line.startswith("id: "):
                            eid = line[4:]
                        elif line.startswith("event: "):
                            event = line[7:]
                    if data:
                        self.events.append((event, eid, json.loads("\n".join(data))))
        except (OSError, ValueError) as exc:
            self.error = exc
        finally:
            if getattr(self, "_file", None) is not None:
                self._file.close()
            self.ended = True

    def records(self) -> list[Any]:
        return [d for e, _, d in self.events if e == "message"]

    def wait(self, n: int, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.records()) < n and time.monotonic() < deadline and not self.ended:
            time.sleep(0.02)
        return self.records()

    def wait_status(self, timeout: float = 10.0) -> int:
        wait_for(lambda: self.status is not None or self.ended, timeout, "a response")
        assert self.status is not None
        return self.status

    def close(self) -> None:
        import socket

        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


def wait_for(check: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class NeverReads:
    """A WebSocket client on a raw socket with a tiny receive buffer that does the handshake
    and then never reads a byte."""

    def __init__(self, url: str) -> None:
        import base64
        import os
        import socket
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((u.hostname, u.port))
        key = base64.b64encode(os.urandom(16)).decode()
        target = u.path + ("?" + u.query if u.query else "")
        self.sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # byte by byte: read nothing past the handshake
        assert head.startswith(b"HTTP/1.1 101"), head

    def close(self) -> None:
        self.sock.close()
