"""A small blocking Kafka client on riverbed's own codec, for the admin commands that
confluent-kafka's AdminClient does not offer (DescribeTransactions, ListTransactions,
DescribeProducers). It talks to the bootstrap broker only (riverbed is one broker) and
sends each API at a version both sides support."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Mapping

from riverbed.protocol.extensions import EXTENSIONS
from riverbed.protocol.messages import request_class, response_class
from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from riverbed.protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from riverbed.protocol.messages.sasl_handshake import SaslHandshakeRequest, SaslHandshakeResponse
from riverbed.protocol.primitives import Message, Reader, Writer
from riverbed.security.scram import ScramClient, ScramError, ScramMechanism

from .client_commands import CommandError

API_VERSIONS = 18


class WireClient:
    """``security`` takes librdkafka's client settings (what ``--command-config`` files hold):
    ``security.protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``sasl.mechanism``
    (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), ``sasl.username``, ``sasl.password``,
    ``ssl.ca.location``, ``ssl.certificate.location``, ``ssl.key.location``,
    ``ssl.key.password``, ``ssl.endpoint.identification.algorithm`` (``none`` skips the host
    name check)."""

    def __init__(
        self,
        bootstrap: str,
        timeout: float = 30.0,
        client_id: str = "riverbed-cli",
        security: Mapping[str, str] | None = None,
    ) -> None:
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        security = dict(security or {})
        protocol = security.get("security.protocol", "PLAINTEXT").upper()
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
            if protocol in ("SSL", "SASL_SSL"):
                ctx = ssl.create_default_context(cafile=security.get("ssl.ca.location") or None)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                if security.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
                    ctx.check_hostname = False
                if security.get("ssl.certificate.location"):
                    ctx.load_cert_chain(security["ssl.certificate.location"], security.get("ssl.key.location") or None, password=security.get("ssl.key.password") or None)
                sock = ctx.wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot connect to {bootstrap}: {exc}") from exc
        self.sock = sock
        self.client_id = client_id
        self.corr = 0
        try:
            resp = self._call(ApiVersionsRequest(), 0)
            assert isinstance(resp, ApiVersionsResponse)
            self.versions = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
            if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
                self._authenticate(security)
        except BaseException:
            sock.close()  # refused (a TLS 1.3 client certificate check, a failed login): no leak
            raise

    def _authenticate(self, security: Mapping[str, str]) -> None:
        mechanism = (security.get("sasl.mechanism") or security.get("sasl.mechanisms") or "PLAIN").upper()
        user, password = security.get("sasl.username", ""), security.get("sasl.password", "")
        hs = self._call(SaslHandshakeRequest(mechanism=mechanism), 1)
        assert isinstance(hs, SaslHandshakeResponse)
        if hs.error_code:
            raise CommandError(f"the broker does not accept SASL mechanism {mechanism} (it offers {', '.join(hs.mechanisms)})")

        def step(token: bytes) -> bytes:
            resp = self._call(SaslAuthenticateRequest(auth_bytes=token), 1)
            assert isinstance(resp, SaslAuthenticateResponse)
            if resp.error_code:
                raise CommandError(f"authentication failed: {resp.error_message}")
            return resp.auth_bytes

        if mechanism == "PLAIN":
            step(f"\0{user}\0{password}".encode())
            return
        try:
            client = ScramClient(ScramMechanism.from_name(mechanism), user, password)
            server_first = step(client.first_message())
            client.verify_server_final(step(client.final_message(server_first)))
        except ScramError as exc:
            raise CommandError(f"SCRAM authentication failed: {exc}") from exc

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
