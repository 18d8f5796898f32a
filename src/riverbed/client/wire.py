"""A small blocking Kafka client on riverbed's own codec (``riverbed.protocol``), for the
requests that confluent-kafka's AdminClient does not offer (DescribeLogDirs, the transaction
and share-group APIs, riverbed's own extensions). One connection to one broker, one request at
a time, each API at the highest version both sides support; it speaks to any broker that has
the API (Apache Kafka too).

``security`` takes librdkafka's client settings (what ``--command-config`` files hold):
``security.protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``sasl.mechanism`` (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512), ``sasl.username``, ``sasl.password``, ``ssl.ca.location``,
``ssl.certificate.location``, ``ssl.key.location``, ``ssl.key.password``,
``ssl.endpoint.identification.algorithm`` (``none`` skips the host name check). SCRAM's
client side is the ``scramp`` library's."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Mapping
from typing import Any, Self

import scramp

from riverbed.protocol.extensions import EXTENSIONS
from riverbed.protocol.messages import request_class, response_class
from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from riverbed.protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from riverbed.protocol.messages.sasl_handshake import SaslHandshakeRequest, SaslHandshakeResponse
from riverbed.protocol.primitives import Message, Reader, Writer

__all__ = ["MAX_FRAME", "WireClient", "WireError"]

#: the largest response frame accepted (a hostile or broken peer cannot make it allocate more)
MAX_FRAME = 64 * 1024 * 1024
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class WireError(Exception):
    """The request could not be made (connection, authentication, unsupported API)."""


class WireClient:
    def __init__(
        self,
        bootstrap: str,
        security: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        client_id: str = "riverbed",
    ) -> None:
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        sec = {k: str(v) for k, v in (security or {}).items()}
        protocol = sec.get("security.protocol", "PLAINTEXT").upper()
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
            if protocol in ("SSL", "SASL_SSL"):
                ctx = ssl.create_default_context(cafile=sec.get("ssl.ca.location") or None)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                if sec.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
                    ctx.check_hostname = False
                if sec.get("ssl.certificate.location"):
                    ctx.load_cert_chain(sec["ssl.certificate.location"], sec.get("ssl.key.location") or None, password=sec.get("ssl.key.password") or None)
                sock = ctx.wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as exc:
            raise WireError(f"cannot connect to {bootstrap}: {exc}") from exc
        self.sock = sock
        self.client_id = client_id
        self.corr = 0
        try:
            resp = self._call(ApiVersionsRequest(), 0)
            assert isinstance(resp, ApiVersionsResponse)
            self.versions = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
            if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
                self._authenticate(sec)
        except BaseException:
            sock.close()  # refused (a TLS client certificate check, a failed login): no leak
            raise

    # ---- authentication
    def _authenticate(self, sec: Mapping[str, str]) -> None:
        mechanism = (sec.get("sasl.mechanism") or sec.get("sasl.mechanisms") or "PLAIN").upper()
        if mechanism not in _MECHANISMS:
            raise WireError(f"SASL mechanism {mechanism} is not supported here (only {', '.join(_MECHANISMS)})")
        user, password = sec.get("sasl.username", ""), sec.get("sasl.password", "")
        hs = self._call(SaslHandshakeRequest(mechanism=mechanism), 1)
        assert isinstance(hs, SaslHandshakeResponse)
        if hs.error_code:
            raise WireError(f"the broker does not accept SASL mechanism {mechanism} (it offers {', '.join(hs.mechanisms)})")

        def step(token: bytes) -> bytes:
            resp = self._call(SaslAuthenticateRequest(auth_bytes=token), 1)
            assert isinstance(resp, SaslAuthenticateResponse)
            if resp.error_code:
                raise WireError(f"authentication failed: {resp.error_message}")
            return resp.auth_bytes

        if mechanism == "PLAIN":
            step(f"\0{user}\0{password}".encode())
            return
        try:
            client = scramp.ScramClient([mechanism], user, password)
            server_first = step(client.get_client_first().encode())
            client.set_server_first(server_first.decode())
            server_final = step(client.get_client_final().encode())
            client.set_server_final(server_final.decode())
        except scramp.ScramException as exc:
            raise WireError(f"SCRAM authentication failed: {exc}") from exc

    # ---- life
    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests
    def supports(self, api_key: int, version: int) -> bool:
        span = self.versions.get(api_key)
        return span is not None and span[0] <= version <= span[1]

    def request(self, msg: Message, max_version: int) -> Message:
        """Send ``msg`` at the highest version <= ``max_version`` the broker supports."""
        cls = request_class(msg.API_KEY)
        span = self.versions.get(msg.API_KEY)
        if span is None:
            raise WireError(f"the broker does not support {cls.__name__.removesuffix('Request')}")
        version = min(max_version, span[1], cls.MAX_VERSION)
        if version < span[0]:
            raise WireError(f"no common version of {cls.__name__.removesuffix('Request')}")
        return self._call(msg, version)

    def request_extension(self, msg: Message, response: type[Message] | None = None) -> Message:
        """One of riverbed's own requests (``protocol/extensions.py``), at version 0; they are
        not listed in ApiVersions. A broker that does not know it closes the connection."""
        return self._call(msg, 0, response or EXTENSIONS[msg.API_KEY][1])

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
            size = struct.unpack(">i", self._exact(4))[0]
            if not 0 <= size <= MAX_FRAME:
                raise WireError(f"response frame of {size} bytes")
            frame = self._exact(size)
        except OSError as exc:
            raise WireError(f"broker connection failed: {exc}") from exc
        r = Reader(frame)
        if r.int32() != self.corr:
            raise WireError("response out of order")
        if flexible and msg.API_KEY != ApiVersionsRequest.API_KEY:
            r.skip_tags()
        return (response or response_class(msg.API_KEY)).read(r, version)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise WireError("connection closed by the broker")
            buf += chunk
        return bytes(buf)
