"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side, as Apache Kafka speaks it.

Pure and synchronous: bytes in, bytes out, no sockets, no clock. The pieces mirror Kafka's
``ScramFormatter`` (key derivation), ``ScramMessages`` (parsing and building the four messages)
and ``ScramSaslServer`` (the per-connection exchange):

1. client-first  ``n,,n=<saslname>,r=<client nonce>[,<ext>=<value>]*``
2. server-first  ``r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>``
3. client-final  ``c=<base64 gs2 header>,r=<nonce>[,<ext>=<value>]*,p=<base64 proof>``
4. server-final  ``v=<base64 ServerSignature>``

Differences from the letter of Kafka, each on purpose:

* An unknown user gets a server-first message like any other, with a salt derived
  deterministically from the user name and a secret (the "decoy key"), so the exchange fails
  only at the proof, exactly as a wrong password does. Kafka fails at the first message, which
  tells an attacker which user names exist.
* Every failure raises :class:`ScramError` with an internal reason for the log; the session
  layer answers the client with one generic message. No ``e=`` server-final is sent (Kafka
  answers SASL_AUTHENTICATION_FAILED instead, and so do we).

A small :class:`ScramClient` computes the client side from a password; it exists for tests and
for tools, the broker never uses it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "ClientFinalMessage",
    "ClientFirstMessage",
    "ScramClient",
    "ScramCredential",
    "ScramError",
    "ScramFormatter",
    "ScramMechanism",
    "ScramSaslServer",
    "ServerFirstMessage",
    "decode_saslname",
    "encode_saslname",
]

MIN_ITERATIONS = 4096
"""The least iteration count accepted for a stored credential (RFC 7677 and Kafka)."""
MAX_ITERATIONS = 16384
"""Kafka's upper bound for AlterUserScramCredentials."""
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 32

_MAX_MESSAGE_BYTES = 64 * 1024


class ScramError(Exception):
    """A SCRAM exchange failed. ``str(error)`` is an internal reason for the log only: it may
    name the user or the fault and must never be sent to the client."""


class ScramMechanism(enum.Enum):
    """The SCRAM mechanisms riverbed implements. ``type_id`` is the number that
    AlterUserScramCredentials and DescribeUserScramCredentials carry on the wire."""

    SCRAM_SHA_256 = ("SCRAM-SHA-256", "sha256", 1)
    SCRAM_SHA_512 = ("SCRAM-SHA-512", "sha512", 2)

    def __init__(self, mechanism_name: str, hash_name: str, type_id: int) -> None:
        self.mechanism_name = mechanism_name
        self.hash_name = hash_name
        self.type_id = type_id

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    @classmethod
    def from_name(cls, name: str) -> ScramMechanism:
        for mechanism in cls:
            if mechanism.mechanism_name == name:
                return mechanism
        raise ValueError(f"unknown SCRAM mechanism {name!r}")

    @classmethod
    def from_type(cls, type_id: int) -> ScramMechanism:
        for mechanism in cls:
            if mechanism.type_id == type_id:
                return mechanism
        raise ValueError(f"unknown SCRAM mechanism type {type_id}")


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What the server keeps for one user and mechanism. The password and the salted password
    are not here: from these four values nobody can log in, only check a login."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


class ScramFormatter:
    """Key derivation for one mechanism (RFC 5802 section 3)."""

    def __init__(self, mechanism: ScramMechanism) -> None:
        self.mechanism = mechanism
        self._hash = mechanism.hash_name

    def hi(self, password: bytes, salt: bytes, iterations: int) -> bytes:
        """SaltedPassword = Hi(Normalize(password), salt, i), i.e. PBKDF2-HMAC."""
        return hashlib.pbkdf2_hmac(self._hash, password, salt, iterations)

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self._hash).digest()

    def h(self, data: bytes) -> bytes:
        return hashlib.new(self._hash, data).digest()

    def salted_password(self, password: str, salt: bytes, iterations: int) -> bytes:
        # Kafka does not apply SASLprep; it uses the UTF-8 bytes of the password as they are.
        return self.hi(password.encode("utf-8"), salt, iterations)

    def client_key(self, salted_password: bytes) -> bytes:
        return self.hmac(salted_password, b"Client Key")

    def server_key(self, salted_password: bytes) -> bytes:
        return self.hmac(salted_password, b"Server Key")

    def stored_key(self, client_key: bytes) -> bytes:
        return self.h(client_key)

    def credential_from_salted(
        self, salted_password: bytes, salt: bytes, iterations: int
    ) -> ScramCredential:
        return ScramCredential(
            salt=salt,
            stored_key=self.stored_key(self.client_key(salted_password)),
            server_key=self.server_key(salted_password),
            iterations=iterations,
        )

    def credential(self, password: str, salt: bytes, iterations: int) -> ScramCredential:
        return self.credential_from_salted(
            self.salted_password(password, salt, iterations), salt, iterations
        )

    def client_proof(self, salted_password: bytes, auth_message: bytes) -> bytes:
        client_key = self.client_key(salted_password)
        signature = self.hmac(self.stored_key(client_key), auth_message)
        return _xor(client_key, signature)

    def server_signature(self, server_key: bytes, auth_message: bytes) -> bytes:
        return self.hmac(server_key, auth_message)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# -- saslname escaping -------------------------------------------------------------------------


def encode_saslname(name: str) -> str:
    """Escape a user name for ``n=`` (RFC 5802: ``=`` as ``=3D``, ``,`` as ``=2C``)."""
    return name.replace("=", "=3D").replace(",", "=2C")


_ESCAPE = re.compile(r"=(2C|3D)?")


def decode_saslname(value: str) -> str:
    """Undo :func:`encode_saslname`; any other ``=`` is an error."""

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code is None:
            raise ScramError("invalid '=' escape in saslname")
        return "," if code == "2C" else "="

    return _ESCAPE.sub(replace, value)


# -- messages ----------------------------------------------------------------------------------

_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except ','
_EXT_KEY = re.compile(r"[A-Za-z]+")  # Kafka allows longer keys ("tokenauth")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _decode_utf8(message: bytes) -> str:
    if len(message) > _MAX_MESSAGE_BYTES:
        raise ScramError("SCRAM message too large")
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("SCRAM message is not valid UTF-8") from None
    if "\x00" in text:
        raise ScramError("NUL in SCRAM message")
    return text


def _b64decode(value: str, what: str) -> bytes:
    if not value or _B64.fullmatch(value) is None:
        raise ScramError(f"invalid base64 in {what}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ScramError(f"invalid base64 in {what}") from None


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _parse_extensions(parts: list[str]) -> dict[str, str]:
    extensions: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or _EXT_KEY.fullmatch(key) is None or not value:
            raise ScramError("malformed SCRAM attribute")
        if key in extensions:
            raise ScramError("repeated SCRAM extension")
        extensions[key] = value
    return extensions


@dataclass(frozen=True, slots=True)
class ClientFirstMessage:
    gs2_header: str  # "n,," or "y,," (or "n,a=<authzid>,")
    authzid: str
    username: str
    nonce: str
    extensions: dict[str, str]
    bare: str  # client-first-message-bare, as sent: part of the AuthMessage

    @classmethod
    def parse(cls, message: bytes) -> ClientFirstMessage:
        text = _decode_utf8(message)
        parts = text.split(",")
        if len(parts) < 4:
            raise ScramError("malformed client-first message")
        cbind, authz = parts[0], parts[1]
        if cbind.startswith("p"):
            raise ScramError("channel binding requested but not supported")
        if cbind not in ("n", "y"):
            raise ScramError("malformed gs2 header")
        authzid = ""
        if authz:
            if not authz.startswith("a=") or len(authz) == 2:
                raise ScramError("malformed authzid")
            authzid = decode_saslname(authz[2:])
        if parts[2].startswith("m="):
            raise ScramError("unsupported mandatory SCRAM extension")
        if not parts[2].startswith("n=") or len(parts[2]) == 2:
            raise ScramError("malformed user name attribute")
        username = decode_saslname(parts[2][2:])
        if not parts[3].startswith("r="):
            raise ScramError("malformed nonce attribute")
        nonce = parts[3][2:]
        if _NONCE.fullmatch(nonce) is None:
            raise ScramError("malformed client nonce")
        extensions = _parse_extensions(parts[4:])
        return cls(
            gs2_header=f"{cbind},{authz},",
            authzid=authzid,
            username=username,
            nonce=nonce,
            extensions=extensions,
            bare=",".join(parts[2:]),
        )

    @staticmethod
    def build(username: str, nonce: str, *, authzid: str = "", extensions: str = "") -> bytes:
        authz = f"a={encode_saslname(authzid)}" if authzid else ""
        return f"n,{authz},n={encode_saslname(username)},r={nonce}{extensions}".encode()


@dataclass(frozen=True, slots=True)
class ServerFirstMessage:
    nonce: str
    salt: bytes
    iterations: int

    def to_bytes(self) -> bytes:
        return f"r={self.nonce},s={_b64encode(self.salt)},i={self.iterations}".encode()

    @classmethod
    def parse(cls, message: bytes) -> ServerFirstMessage:
        text = _decode_utf8(message)
        parts = text.split(",")
        if len(parts) < 3 or not parts[0].startswith("r=") or not parts[1].startswith("s="):
            raise ScramError("malformed server-first message")
        if not parts[2].startswith("i=") or not parts[2][2:].isdigit():
            raise ScramError("malformed iteration count")
        nonce = parts[0][2:]
        if _NONCE.fullmatch(nonce) is None:
            raise ScramError("malformed server nonce")
        return cls(nonce, _b64decode(parts[1][2:], "salt"), int(parts[2][2:]))


@dataclass(frozen=True, slots=True)
class ClientFinalMessage:
    channel_binding: bytes
    nonce: str
    extensions: dict[str, str]
    proof: bytes
    without_proof: str  # client-final-message-without-proof: part of the AuthMessage

    @classmethod
    def parse(cls, message: bytes) -> ClientFinalMessage:
        text = _decode_utf8(message)
        head, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise ScramError("client-final message without proof")
        parts = head.split(",")
        if len(parts) < 2 or not parts[0].startswith("c=") or not parts[1].startswith("r="):
            raise ScramError("malformed client-final message")
        nonce = parts[1][2:]
        if _NONCE.fullmatch(nonce) is None:
            raise ScramError("malformed nonce in client-final message")
        return cls(
            channel_binding=_b64decode(parts[0][2:], "channel binding"),
            nonce=nonce,
            extensions=_parse_extensions(parts[2:]),
            proof=_b64decode(proof_b64, "proof"),
            without_proof=head,
        )

    @staticmethod
    def build_without_proof(gs2_header: str, nonce: str) -> str:
        return f"c={_b64encode(gs2_header.encode())},r={nonce}"


# -- server ------------------------------------------------------------------------------------


class _State(enum.Enum):
    RECEIVE_CLIENT_FIRST = "receive-client-first"
    RECEIVE_CLIENT_FINAL = "receive-client-final"
    COMPLETE = "complete"
    FAILED = "failed"


def _default_nonce() -> str:
    # 32 URL-safe characters: printable, no ',' (Kafka uses a random base-36 string).
    return secrets.token_urlsafe(24)


class ScramSaslServer:
    """One SCRAM exchange on one connection. Feed each client message to
    :meth:`evaluate_response`; it returns the server's answer or raises :class:`ScramError`.
    After any error, and after success, every further message is refused (no replay)."""

    def __init__(
        self,
        mechanism: ScramMechanism,
        lookup: Callable[[str], ScramCredential | None],
        *,
        decoy_key: bytes,
        nonce_factory: Callable[[], str] = _default_nonce,
        decoy_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self.mechanism = mechanism
        self._formatter = ScramFormatter(mechanism)
        self._lookup = lookup
        self._decoy_key = decoy_key
        self._nonce_factory = nonce_factory
        self._decoy_iterations = decoy_iterations
        self._state = _State.RECEIVE_CLIENT_FIRST
        self._client_first: ClientFirstMessage | None = None
        self._server_first: ServerFirstMessage | None = None
        self._credential: ScramCredential | None = None
        self._known_user = False
        self.username: str | None = None

    @property
    def mechanism_name(self) -> str:
        return self.mechanism.mechanism_name

    @property
    def is_complete(self) -> bool:
        return self._state is _State.COMPLETE

    @property
    def authorization_id(self) -> str:
        if self._state is not _State.COMPLETE or self.username is None:
            raise ScramError("authentication not complete")
        return self.username

    def evaluate_response(self, response: bytes) -> bytes:
        try:
            if self._state is _State.RECEIVE_CLIENT_FIRST:
                return self._client_first_step(response)
            if self._state is _State.RECEIVE_CLIENT_FINAL:
                return self._client_final_step(response)
            raise ScramError(f"unexpected SCRAM message in state {self._state.value}")
        except ScramError:
            self._state = _State.FAILED
            raise
        except Exception as exc:  # pragma: no cover - defence in depth: never leak a crash
            self._state = _State.FAILED
            raise ScramError(f"internal error in SCRAM exchange: {type(exc).__name__}") from exc

    def _client_first_step(self, response: bytes) -> bytes:
        first = ClientFirstMessage.parse(response)
        if first.authzid and first.authzid != first.username:
            raise ScramError("authorization id differs from the user name")
        if first.extensions.get("tokenauth", "").lower() == "true":
            raise ScramError("delegation token authentication is not supported")
        credential = self._lookup(first.username)
        self._known_user = credential is not None
        if credential is None:
            credential = self._decoy_credential(first.username)
        server_nonce = self._nonce_factory()
        if _NONCE.fullmatch(server_nonce) is None:
            raise ScramError("nonce factory produced an invalid nonce")
        server_first = ServerFirstMessage(
            first.nonce + server_nonce, credential.salt, credential.iterations
        )
        self._client_first = first
        self._server_first = server_first
        self._credential = credential
        self.username = first.username
        self._state = _State.RECEIVE_CLIENT_FINAL
        return server_first.to_bytes()

    def _client_final_step(self, response: bytes) -> bytes:
        first, server_first, credential = self._client_first, self._server_first, self._credential
        assert first is not None and server_first is not None and credential is not None
        final = ClientFinalMessage.parse(response)
        if not hmac.compare_digest(final.channel_binding, first.gs2_header.encode()):
            raise ScramError("channel binding does not match the gs2 header")
        # Kafka accepts a final nonce that *ends with* the server's (ScramSaslServer), because
        # librdkafka up to 2.0 sends its client nonce again in front of it; the proof covers
        # the whole client-final message, so this weakens nothing.
        expected = server_first.nonce.encode()
        if not hmac.compare_digest(final.nonce.encode()[-len(expected) :], expected):
            raise ScramError("nonce mismatch")
        if len(final.proof) != self.mechanism.digest_size:
            raise ScramError("client proof has the wrong length")
        auth_message = ",".join(
            (first.bare, server_first.to_bytes().decode(), final.without_proof)
        ).encode()
        signature = self._formatter.hmac(credential.stored_key, auth_message)
        client_key = _xor(final.proof, signature)
        proof_ok = hmac.compare_digest(self._formatter.h(client_key), credential.stored_key)
        if not (proof_ok and self._known_user):
            raise ScramError("invalid client proof")
        self._state = _State.COMPLETE
        server_signature = self._formatter.server_signature(credential.server_key, auth_message)
        return f"v={_b64encode(server_signature)}".encode()

    def _decoy_credential(self, username: str) -> ScramCredential:
        """A stable, fake credential for a user that does not exist: same salt for the same
        name every time (keyed by the store's secret), keys nobody can match."""
        seed = f"{self.mechanism.mechanism_name}\x00{username}".encode()
        salt = hmac.new(self._decoy_key, b"salt\x00" + seed, hashlib.sha256).digest()
        salt = salt[:SALT_BYTES]
        stored = hmac.new(self._decoy_key, b"stored\x00" + seed, self.mechanism.hash_name)
        return ScramCredential(
            salt=salt,
            stored_key=stored.digest(),
            server_key=secrets.token_bytes(self.mechanism.digest_size),
            iterations=self._decoy_iterations,
        )


# -- client (tests and tools only) -------------------------------------------------------------


class ScramClient:
    """The client half of an exchange, for tests and tools: computes client-first and
    client-final from a password and checks the server signature."""

    def __init__(
        self,
        mechanism: ScramMechanism,
        username: str,
        password: str,
        *,
        nonce: str | None = None,
        authzid: str = "",
    ) -> None:
        self.mechanism = mechanism
        self._formatter = ScramFormatter(mechanism)
        self.username = username
        self._password = password
        self.nonce = nonce if nonce is not None else _default_nonce()
        self._authzid = authzid
        self._client_first_bare = ""
        self._auth_message = b""
        self._salted_password = b""

    def first_message(self) -> bytes:
        message = ClientFirstMessage.build(self.username, self.nonce, authzid=self._authzid)
        self._gs2_header = f"n,{'a=' + encode_saslname(self._authzid) if self._authzid else ''},"
        self._client_first_bare = message.decode()[len(self._gs2_header) :]
        return message

    def final_message(self, server_first: bytes) -> bytes:
        parsed = ServerFirstMessage.parse(server_first)
        if not parsed.nonce.startswith(self.nonce) or parsed.nonce == self.nonce:
            raise ScramError("server nonce does not extend the client nonce")
        if parsed.iterations < MIN_ITERATIONS:
            raise ScramError("too few iterations")
        self._salted_password = self._formatter.salted_password(
            self._password, parsed.salt, parsed.iterations
        )
        without_proof = ClientFinalMessage.build_without_proof(self._gs2_header, parsed.nonce)
        self._auth_message = ",".join(
            (self._client_first_bare, server_first.decode(), without_proof)
        ).encode()
        proof = self._formatter.client_proof(self._salted_password, self._auth_message)
        return f"{without_proof},p={_b64encode(proof)}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        text = _decode_utf8(server_final)
        if not text.startswith("v="):
            raise ScramError("server-final message without verifier")
        expected = self._formatter.server_signature(
            self._formatter.server_key(self._salted_password), self._auth_message
        )
        if not hmac.compare_digest(_b64decode(text[2:].split(",")[0], "verifier"), expected):
            raise ScramError("server signature mismatch")
