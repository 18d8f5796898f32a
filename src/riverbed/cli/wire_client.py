"""A small blocking Kafka client on riverbed's own codec, for the admin commands that
confluent-kafka's AdminClient does not offer (DescribeTransactions, ListTransactions,
DescribeProducers). It talks to the bootstrap broker only (riverbed is one broker) and
sends each API at a version both sides support."""

from __future__ import annotations

import socket
import struct

from riverbed.protocol.extensions import EXTENSIONS
from riverbed.protocol.messages import request_class, response_class
from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from riverbed.protocol.primitives import Message, Reader, Writer

from .client_commands import CommandError

API_VERSIONS = 18


class WireClient:
    def __init__(self, bootstrap: str, timeout: float = 30.0, client_id: str = "riverbed-cli") -> None:
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        try:
            self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot connect to {bootstrap}: {exc}") from exc
        self.client_id = client_id
        self.corr = 0
        resp = self._call(ApiVersionsRequest(), 0)
        assert isinstance(resp, ApiVersionsResponse)
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg: Message, max_version: int) -> Message:
        """Send ``msg`` at the highest version <= ``max_version`` the broker supports."""
        cls = request_class(msg.API_KEY)
        span = self.versions.get(msg.API_KEY)
        if span is None:
            raise CommandError(f"the broker does not support {cls.__name__.removesuffix('Request')}")
        version = min(max_version, span[1], cls.MAX_VERSION)
        if version < span[0]:
            raise CommandError(f"no common version of {cls.__name__.removesuffix('Request')}")
        return self._call(msg, version)

    def request_extension(self, msg: Message) -> Message:
        """Send one of riverbed's own requests (``protocol/extensions.py``) at version 0; they
        are not listed in ApiVersions. A broker that does not know it closes the connection."""
        _, response = EXTENSIONS[msg.API_KEY]
        return self._call(msg, 0, response)

    def _call(self, msg: Message, version: int, response: type[Message] | None = None) -> Message:
        self.corr += 1
        flexible = version >= type(msg).FLEXIBLE_VERSION
        w = Writer()
        w.int16(msg.API_KEY)
        w.int16(version)
        w.int32(self.corr)
        w.nullable_string(self.client_id, False)
        if flexible:
            w.uvarint(0)
        payload = w.getvalue() + msg.encode(version)
        try:
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
            frame = self._exact(struct.unpack(">i", self._exact(4))[0])
        except OSError as exc:
            raise CommandError(f"broker connection failed: {exc}") from exc
        r = Reader(frame)
        if r.int32() != self.corr:
            raise CommandError("response out of order")
        if flexible and msg.API_KEY != API_VERSIONS:
            r.skip_tags()
        return (response or response_class(msg.API_KEY)).read(r, version)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise CommandError("connection closed by the broker")
            buf += chunk
        return bytes(buf)
