"""A minimal blocking Kafka wire client built on riverbed's own codec, for tests that need
to send what real clients never send (garbage, pipelines, odd versions)."""

from __future__ import annotations

import socket
import struct

from riverbed.protocol.messages import request_class, response_class
from riverbed.protocol.primitives import Message, Reader, Writer


class Wire:
    def __init__(self, bootstrap: str, timeout: float = 10.0) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def frame(api_key: int, version: int, corr: int, body: bytes, client_id: str = "wire-test") -> bytes:
        w = Writer()
        w.int16(api_key)
        w.int16(version)
        w.int32(corr)
        w.nullable_string(client_id, False)
        if version >= request_class(api_key).FLEXIBLE_VERSION:
            w.uvarint(0)
        payload = w.getvalue() + body
        return struct.pack(">i", len(payload)) + payload

    def send(self, msg: Message, version: int) -> int:
        self.corr += 1
        self.sock.sendall(self.frame(msg.API_KEY, version, self.corr, msg.encode(version)))
        return self.corr

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> bytes:
        size = struct.unpack(">i", self._exact(4))[0]
        return self._exact(size)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by broker")
            buf += chunk
        return bytes(buf)

    def recv(self, api_key: int, version: int) -> tuple[int, Message]:
        frame = self.recv_frame()
        r = Reader(frame)
        corr = r.int32()
        cls = response_class(api_key)
        if version >= cls.FLEXIBLE_VERSION and api_key != 18:
            r.skip_tags()
        return corr, cls.read(r, version)

    def request(self, msg: Message, version: int) -> Message:
        corr = self.send(msg, version)
        got, resp = self.recv(msg.API_KEY, version)
        assert got == corr
        return resp

    def is_closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
