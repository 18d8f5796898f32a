"""SASL on one connection: the mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and the
per-connection state machine the server drives through SaslHandshake and SaslAuthenticate.

Pure and synchronous. The server owns the socket, the framing and the timing; it feeds this
module what the client sent and writes back what it is told:

    session = SaslSession(factory, client_address="10.0.0.7", throttle=throttle)
    session.admit(api_key)            # every request: NONE, or ILLEGAL_SASL_STATE -> close
    session.handshake(mechanism, version=request_version)   # SaslHandshake
    session.authenticate(auth_bytes)  # SaslAuthenticate (or a raw frame after handshake v0)
    session.principal                 # "User:alice" once authenticated

States (``SaslState``), as in Kafka's SaslServerAuthenticator::

    AWAITING_HANDSHAKE --handshake ok--> AWAITING_AUTHENTICATE --token--> AUTHENTICATING
         |                                        |                         |  ^ token (more steps)
         |                                        +--------last token-------+--+--> AUTHENTICATED
         +--- anything wrong, in any state ---------------------------------------> FAILED

FAILED is final: the server sends the error response (if the version has one) and closes the
connection. Errors the client sees are Kafka's codes with fixed messages; the reason (bad
proof, unknown user, malformed message, ...) goes to the log only, with the client address.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from riverbed.protocol.errors import ErrorCode
from riverbed.security.scram import (
    DEFAULT_ITERATIONS,
    ScramCredential,
    ScramError,
    ScramMechanism,
    ScramSaslServer,
)
from riverbed.security.throttle import FailedAuthThrottle

__all__ = [
    "PLAIN",
    "PRE_AUTH_API_KEYS",
    "SUPPORTED_MECHANISMS",
    "AuthenticateResult",
    "CredentialSource",
    "PlainServer",
    "SaslError",
    "SaslMechanism",
    "SaslServerFactory",
    "SaslSession",
    "SaslState",
    "allowed_before_authentication",
    "failure_message",
]

log = logging.getLogger(__name__)

PLAIN = "PLAIN"
SUPPORTED_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

API_SASL_HANDSHAKE = 17
API_API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
PRE_AUTH_API_KEYS = frozenset({API_SASL_HANDSHAKE, API_API_VERSIONS, API_SASL_AUTHENTICATE})
"""The only requests a SASL listener accepts before authentication (as Kafka)."""

MAX_TOKEN_BYTES = 64 * 1024


def allowed_before_authentication(api_key: int) -> bool:
    return api_key in PRE_AUTH_API_KEYS


def failure_message(mechanism: str) -> str:
    """The one message every failed authentication gets (Kafka's wording)."""
    return (
        "Authentication failed during authentication due to invalid credentials with "
        f"SASL mechanism {mechanism}"
    )


class SaslError(Exception):
    """A mechanism refused the client. ``str(error)`` is for the log, never for the client."""


class SaslMechanism(Protocol):
    """One server-side mechanism instance, used for one exchange (Kafka's SaslServer)."""

    @property
    def mechanism_name(self) -> str: ...

    @property
    def is_complete(self) -> bool: ...

    @property
    def authorization_id(self) -> str: ...

    def evaluate_response(self, response: bytes) -> bytes:
        """Next server token for a client token; raises SaslError or ScramError on failure."""
        ...


class CredentialSource(Protocol):
    """What the mechanisms need from a credential store (CredentialStore provides it)."""

    @property
    def decoy_key(self) -> bytes: ...

    def lookup(self, user: str, mechanism: ScramMechanism | str) -> ScramCredential | None: ...

    def verify_plain(self, user: str, password: str) -> bool: ...


# -- PLAIN -------------------------------------------------------------------------------------


class PlainServer:
    """SASL/PLAIN (RFC 4616): one token ``authzid NUL user NUL password``; empty answer.

    The password is checked against the store's PLAIN entry, a salted hash (never clear text).
    Over a PLAINTEXT listener the password crosses the network in the clear: use SASL_SSL.
    """

    mechanism_name = PLAIN

    def __init__(self, verify: Callable[[str, str], bool]) -> None:
        self._verify = verify
        self._done = False
        self._used = False
        self._user: str | None = None
        self.username: str | None = None  # as the client gave it (for the failed-login count)

    @property
    def is_complete(self) -> bool:
        return self._done

    @property
    def authorization_id(self) -> str:
        if not self._done or self._user is None:
            raise SaslError("authentication not complete")
        return self._user

    def evaluate_response(self, response: bytes) -> bytes:
        if self._used:
            raise SaslError("PLAIN takes exactly one token")
        self._used = True
        try:
            text = response.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslError("PLAIN token is not valid UTF-8") from None
        parts = text.split("\x00")
        if len(parts) != 3:
            raise SaslError("Invalid SASL/PLAIN response: expected 3 tokens")
        authzid, user, password = parts
        if not user:
            raise SaslError("username not specified")
        if not password:
            raise SaslError("password not specified")
        self.username = user
        if authzid and authzid != user:
            raise SaslError("authorization id differs from the user name")
        if not self._verify(user, password):
            raise SaslError(f"invalid username or password for user {user!r}")
        self._user = user
        self._done = True
        return b""


# -- factory -----------------------------------------------------------------------------------


class SaslServerFactory:
    """Creates mechanism instances for the mechanisms enabled on a listener."""

    def __init__(
        self,
        credentials: CredentialSource,
        enabled: Iterable[str] = SUPPORTED_MECHANISMS,
        *,
        nonce_factory: Callable[[], str] | None = None,
        decoy_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self.enabled: tuple[str, ...] = tuple(dict.fromkeys(enabled))
        unknown = [m for m in self.enabled if m not in SUPPORTED_MECHANISMS]
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {', '.join(unknown)}")
        if not self.enabled:
            raise ValueError("at least one SASL mechanism must be enabled")
        self._credentials = credentials
        self._nonce_factory = nonce_factory
        self._decoy_iterations = decoy_iterations

    def create(self, mechanism: str) -> SaslMechanism:
        if mechanism not in self.enabled:
            raise SaslError(f"mechanism {mechanism!r} is not enabled")
        if mechanism == PLAIN:
            return PlainServer(self._credentials.verify_plain)
        scram = ScramMechanism.from_name(mechanism)
        credentials = self._credentials

        def lookup(user: str) -> ScramCredential | None:
            return credentials.lookup(user, scram)

        if self._nonce_factory is None:
            return ScramSaslServer(
                scram,
                lookup,
                decoy_key=credentials.decoy_key,
                decoy_iterations=self._decoy_iterations,
            )
        return ScramSaslServer(
            scram,
            lookup,
            decoy_key=credentials.decoy_key,
            nonce_factory=self._nonce_factory,
            decoy_iterations=self._decoy_iterations,
        )


# -- the per-connection state machine ----------------------------------------------------------


class SaslState(enum.Enum):
    AWAITING_HANDSHAKE = "awaiting-handshake"
    AWAITING_AUTHENTICATE = "awaiting-authenticate"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    FAILED = "failed"


class _Event(enum.Enum):
    HANDSHAKE = "handshake"
    STEP = "step"  # a token accepted, more to come
    DONE = "done"  # the last token accepted


TRANSITIONS: dict[tuple[SaslState, _Event], SaslState] = {
    (SaslState.AWAITING_HANDSHAKE, _Event.HANDSHAKE): SaslState.AWAITING_AUTHENTICATE,
    (SaslState.AWAITING_AUTHENTICATE, _Event.STEP): SaslState.AUTHENTICATING,
    (SaslState.AWAITING_AUTHENTICATE, _Event.DONE): SaslState.AUTHENTICATED,
    (SaslState.AUTHENTICATING, _Event.STEP): SaslState.AUTHENTICATING,
    (SaslState.AUTHENTICATING, _Event.DONE): SaslState.AUTHENTICATED,
}
"""Every legal move; anything else goes to FAILED. Generate diagrams from this table."""

# Which requests each state admits (None: every API except the SASL ones).
_ADMITTED: dict[SaslState, frozenset[int] | None] = {
    SaslState.AWAITING_HANDSHAKE: frozenset({API_API_VERSIONS, API_SASL_HANDSHAKE}),
    SaslState.AWAITING_AUTHENTICATE: frozenset({API_SASL_AUTHENTICATE}),
    SaslState.AUTHENTICATING: frozenset({API_SASL_AUTHENTICATE}),
    SaslState.AUTHENTICATED: None,
    SaslState.FAILED: frozenset(),
}


class AuthenticateResult(NamedTuple):
    error_code: ErrorCode
    error_message: str | None
    response: bytes  # the auth_bytes of the SaslAuthenticate response (or the raw v0 token)
    done: bool  # True once authenticated

    @property
    def close_connection(self) -> bool:
        return self.error_code != ErrorCode.NONE


class SaslSession:
    """The SASL state of one connection. Not thread-safe: one connection, one task.

    ``raw_tokens`` is set by a version 0 SaslHandshake: the client then sends each SASL token
    as a bare size-prefixed frame, without a request header, and expects the server's token
    back the same way (no error field: on failure the server just closes). The server reads
    ``raw_tokens`` to know how to frame; :meth:`authenticate` is the same in both modes.
    """

    session_lifetime_ms = 0  # no KIP-368 re-authentication

    def __init__(
        self,
        factory: SaslServerFactory,
        *,
        client_address: str = "unknown",
        throttle: FailedAuthThrottle | None = None,
        raw_tokens: bool = False,
    ) -> None:
        self._factory = factory
        self.client_address = client_address
        self._throttle = throttle
        self.raw_tokens = raw_tokens
        self.state = SaslState.AWAITING_HANDSHAKE
        self.mechanism: str | None = None
        self._server: SaslMechanism | None = None
        self._principal: str | None = None
        # seconds the server holds back the failure answer (and the close); 0 until it fails
        self.failure_delay = 0.0

    @property
    def enabled_mechanisms(self) -> list[str]:
        return list(self._factory.enabled)

    @property
    def authenticated(self) -> bool:
        return self.state is SaslState.AUTHENTICATED

    @property
    def failed(self) -> bool:
        return self.state is SaslState.FAILED

    @property
    def principal(self) -> str | None:
        """``"User:<name>"`` once authenticated, else None."""
        return self._principal if self.state is SaslState.AUTHENTICATED else None

    def admit(self, api_key: int) -> ErrorCode:
        """Whether a request with ``api_key`` may be handled now. ILLEGAL_SASL_STATE fails the
        session: answer with that error (where the API has one) and close the connection."""
        admitted = _ADMITTED[self.state]
        if admitted is None:
            ok = api_key not in (API_SASL_HANDSHAKE, API_SASL_AUTHENTICATE)
        else:
            ok = api_key in admitted
        if ok:
            return ErrorCode.NONE
        self._fail(f"request with API key {api_key} not allowed in state {self.state.value}")
        return ErrorCode.ILLEGAL_SASL_STATE

    def handshake(self, mechanism: str, *, version: int = 1) -> tuple[ErrorCode, list[str]]:
        """SaslHandshake: ``(error_code, enabled mechanisms)`` for the response. A second
        handshake, or one after a failure, is ILLEGAL_SASL_STATE; an unknown or disabled
        mechanism is UNSUPPORTED_SASL_MECHANISM. Any error fails the session (close)."""
        enabled = self.enabled_mechanisms
        if self.state is not SaslState.AWAITING_HANDSHAKE:
            self._fail(f"SaslHandshake in state {self.state.value}")
            return ErrorCode.ILLEGAL_SASL_STATE, enabled
        if mechanism not in self._factory.enabled:
            self._fail(f"unsupported mechanism {mechanism[:64]!r}")
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM, enabled
        self._server = self._factory.create(mechanism)
        self.mechanism = mechanism
        if version == 0:
            self.raw_tokens = True
        self.state = TRANSITIONS[(self.state, _Event.HANDSHAKE)]
        return ErrorCode.NONE, enabled

    def authenticate(self, token: bytes) -> AuthenticateResult:
        """One SASL token from the client (SaslAuthenticate auth_bytes, or a raw v0 frame)."""
        if self.state not in (SaslState.AWAITING_AUTHENTICATE, SaslState.AUTHENTICATING):
            self._fail(f"SASL token in state {self.state.value}")
            return AuthenticateResult(
                ErrorCode.ILLEGAL_SASL_STATE,
                "Unexpected SASL authentication request in the current state",
                b"",
                False,
            )
        server, mechanism = self._server, self.mechanism
        assert server is not None and mechanism is not None
        try:
            if len(token) > MAX_TOKEN_BYTES:
                raise SaslError(f"SASL token of {len(token)} bytes is too large")
            response = server.evaluate_response(bytes(token))
        except (SaslError, ScramError) as exc:
            self._fail(str(exc), auth_failure=True)
            return AuthenticateResult(
                ErrorCode.SASL_AUTHENTICATION_FAILED, failure_message(mechanism), b"", False
            )
        if not server.is_complete:
            self.state = TRANSITIONS[(self.state, _Event.STEP)]
            return AuthenticateResult(ErrorCode.NONE, None, response, False)
        self.state = TRANSITIONS[(self.state, _Event.DONE)]
        self._principal = f"User:{server.authorization_id}"
        self._server = None
        log.info(
            "Successful SASL %s authentication of %r from %s",
            mechanism,
            self._principal,
            self.client_address,
        )
        return AuthenticateResult(ErrorCode.NONE, None, response, True)

    def _fail(self, reason: str, *, auth_failure: bool = False) -> None:
        """Every failure is answered after the throttle's ``failure_delay`` (Kafka's
        connection.failed.authentication.delay.ms); failed credentials are also counted, per
        address and per user name, and back off (see ``riverbed.security.throttle``)."""
        given = getattr(self._server, "username", None)
        user = given if isinstance(given, str) else None
        self.state = SaslState.FAILED
        self._server = None
        self._principal = None
        if self._throttle is not None:
            if auth_failure:
                self.failure_delay = self._throttle.record_failure(self.client_address, user)
            else:
                self.failure_delay = self._throttle.config.failure_delay
        log.warning(
            "Failed SASL authentication from %s (mechanism %s, user %r): %s; answered in %.1f s",
            self.client_address,
            self.mechanism,
            None if user is None else user[:64],
            reason,
            self.failure_delay,
        )
