"""SaslHandshake (key 17) and SaslAuthenticate (key 36), plus the raw token frames that
follow a version 0 SaslHandshake. The per-connection state machine is
``riverbed.security.sasl.SaslSession`` (created by ``Broker.sasl_session`` on SASL listeners);
this module moves its answers onto the wire.

Every SASL step runs off the event loop, at once. Failures end the connection: the error
response is held back by the session's ``failure_delay`` (at least Kafka's
connection.failed.authentication.delay.ms, more for an address or user with repeated failed
logins: ``riverbed.security.throttle``), then sent, then the server closes the connection.
Only the failing connection waits: a successful login is never delayed.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from riverbed.protocol.messages.sasl_handshake import SaslHandshakeRequest, SaslHandshakeResponse
from riverbed.protocol.primitives import Buffer
from riverbed.security.sasl import AuthenticateResult, SaslSession
from riverbed.server.handler import CloseConnection, ConnectionInfo, Reply

if TYPE_CHECKING:
    from ..broker import Broker

NOT_SASL = "SASL is not enabled on this listener"


def handle_sasl_handshake(
    broker: Broker, conn: ConnectionInfo, version: int, req: SaslHandshakeRequest
) -> SaslHandshakeResponse | asyncio.Future[SaslHandshakeResponse]:
    session = conn.state.get("sasl")
    if not isinstance(session, SaslSession):  # a PLAINTEXT or SSL listener: as Kafka
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    code, mechanisms = session.handshake(req.mechanism, version=version)
    response = SaslHandshakeResponse(error_code=code, mechanisms=mechanisms)
    if code != ErrorCode.NONE:
        conn.state["close_after_reply"] = True
        if session.failure_delay > 0:
            return asyncio.ensure_future(_later(session.failure_delay, response))
    return response


async def _later(delay: float, response: SaslHandshakeResponse) -> SaslHandshakeResponse:
    await asyncio.sleep(delay)
    return response


async def _authenticate(broker: Broker, conn: ConnectionInfo, session: SaslSession, token: bytes) -> AuthenticateResult:
    """One SASL step, off the event loop (a PLAIN login against a SCRAM credential derives a
    key: milliseconds of PBKDF2) and one at a time per connection. Checked at once; a
    failure is answered after the session's ``failure_delay`` (this connection only, as
    Kafka's connection.failed.authentication.delay.ms): a client that waits for its answers
    guesses at most once per delay per connection, and a stale-password client retrying in
    a loop cannot slow down the other clients of its host."""
    lock = conn.state.setdefault("sasl_lock", asyncio.Lock())
    async with lock:
        result = await asyncio.get_running_loop().run_in_executor(None, session.authenticate, token)
        if result.close_connection and session.failure_delay > 0:
            await asyncio.sleep(session.failure_delay)
        return result


def handle_sasl_authenticate(
    broker: Broker, conn: ConnectionInfo, version: int, req: SaslAuthenticateRequest
) -> SaslAuthenticateResponse | asyncio.Future[SaslAuthenticateResponse]:
    session = conn.state.get("sasl")
    if not isinstance(session, SaslSession):
        return SaslAuthenticateResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message=NOT_SASL)
    return asyncio.ensure_future(_answer(broker, conn, session, bytes(req.auth_bytes)))


async def _answer(broker: Broker, conn: ConnectionInfo, session: SaslSession, token: bytes) -> SaslAuthenticateResponse:
    result = await _authenticate(broker, conn, session, token)
    response = SaslAuthenticateResponse(
        error_code=result.error_code,
        error_message=result.error_message,
        auth_bytes=result.response,
        session_lifetime_ms=session.session_lifetime_ms,
    )
    if result.done:
        conn.state["principal"] = session.principal
    if result.close_connection:
        conn.state["close_after_reply"] = True
    return response


def handle_raw_token(broker: Broker, conn: ConnectionInfo, session: SaslSession, frame: bytearray) -> Reply:
    """A SASL token sent as a bare frame after SaslHandshake v0: answered the same way (a
    size-prefixed token, no header). There is no error field: a failure just closes."""
    return _raw(broker, conn, session, bytes(frame))


async def _raw(broker: Broker, conn: ConnectionInfo, session: SaslSession, token: bytes) -> list[Buffer] | None:
    result = await _authenticate(broker, conn, session, token)
    if result.close_connection:
        raise CloseConnection(f"SASL authentication of {conn.peer} failed")
    if result.done:
        conn.state["principal"] = session.principal
    return [struct.pack(">i", len(result.response)) + result.response]
