"""SaslHandshake (key 17) and SaslAuthenticate (key 36), plus the raw token frames that
follow a version 0 SaslHandshake. The per-connection state machine is
``riverbed.security.sasl.SaslSession`` (created by ``Broker.sasl_session`` on SASL listeners);
this module moves its answers onto the wire.

Failures end the connection: the error response is sent (after the failed-login delay of the
broker's FailedAuthThrottle, awaited with asyncio.sleep so the event loop keeps serving
others), then the server closes it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, TypeVar

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.sasl_authenticate import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
)
from riverbed.protocol.messages.sasl_handshake import SaslHandshakeRequest, SaslHandshakeResponse
from riverbed.protocol.primitives import Buffer
from riverbed.security.sasl import SaslSession
from riverbed.server.handler import CloseConnection, ConnectionInfo, Reply

if TYPE_CHECKING:
    from ..broker import Broker

T = TypeVar("T")

NOT_SASL = "SASL is not enabled on this listener"


async def _after(delay: float, value: T) -> T:
    await asyncio.sleep(delay)
    return value


def handle_sasl_handshake(
    broker: Broker, conn: ConnectionInfo, version: int, req: SaslHandshakeRequest
) -> SaslHandshakeResponse | asyncio.Future[SaslHandshakeResponse]:
    session = conn.state.get("sasl")
    if not isinstance(session, SaslSession):  # a PLAINTEXT or SSL listener: as Kafka
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    delay = broker.auth_throttle.delay_for(session.client_address)
    code, mechanisms = session.handshake(req.mechanism, version=version)
    response = SaslHandshakeResponse(error_code=code, mechanisms=mechanisms)
    if code != ErrorCode.NONE:
        conn.state["close_after_reply"] = True
    if delay > 0:  # repeated failures from this host: slow it down
        return asyncio.ensure_future(_after(delay, response))
    return response


def handle_sasl_authenticate(
    broker: Broker, conn: ConnectionInfo, version: int, req: SaslAuthenticateRequest
) -> SaslAuthenticateResponse | asyncio.Future[SaslAuthenticateResponse]:
    session = conn.state.get("sasl")
    if not isinstance(session, SaslSession):
        return SaslAuthenticateResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message=NOT_SASL)
    result = session.authenticate(req.auth_bytes)
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
        if session.failure_delay > 0:
            return asyncio.ensure_future(_after(session.failure_delay, response))
    return response


def handle_raw_token(broker: Broker, conn: ConnectionInfo, session: SaslSession, frame: bytearray) -> Reply:
    """A SASL token sent as a bare frame after SaslHandshake v0: answered the same way (a
    size-prefixed token, no header). There is no error field: a failure just closes."""
    result = session.authenticate(bytes(frame))
    if result.close_connection:
        if session.failure_delay > 0:
            return _close_later(session.failure_delay, conn.peer)
        raise CloseConnection(f"SASL authentication of {conn.peer} failed")
    if result.done:
        conn.state["principal"] = session.principal
    chunks: list[Buffer] = [struct.pack(">i", len(result.response)) + result.response]
    return chunks


async def _close_later(delay: float, peer: str) -> list[Buffer] | None:
    await asyncio.sleep(delay)
    raise CloseConnection(f"SASL authentication of {peer} failed")
