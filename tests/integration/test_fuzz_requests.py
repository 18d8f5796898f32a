"""Fuzz the broker's request path in-process: any frame either gets an answer or closes the
connection (CloseConnection); nothing else escapes, and the broker keeps serving.

This calls ``Broker.handle`` directly (no TCP, no real client), hence the ``in_process``
marker; test_fuzz_tcp.py sends malformed frames over TCP to a broker process."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverbed.broker.versions import SUPPORTED
from riverbed.server.handler import CloseConnection, ConnectionInfo
from riverbed.testing import EmbeddedBroker

from .wire import Wire

pytestmark = pytest.mark.in_process

frames = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda key, version, body: struct.pack(">hhi", key, version, 1) + b"\x00\x01x" + body,
        st.sampled_from(sorted(SUPPORTED)),
        st.integers(0, 12),
        st.binary(max_size=200),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=frames)
def test_any_frame_is_answered_or_closes(riverbed_session_broker: EmbeddedBroker, frame: bytes) -> None:
    b = riverbed_session_broker
    conn = ConnectionInfo(peer="fuzz", listener="PLAINTEXT", connection_id=0)

    async def run() -> object:
        try:
            reply = b.broker.handle(conn, bytearray(frame))
        except CloseConnection:
            return "closed"
        if reply is None or isinstance(reply, list):
            return reply
        try:
            return await reply  # type: ignore[misc]
        except CloseConnection:
            return "closed"

    import asyncio

    fut = asyncio.run_coroutine_threadsafe(run(), b._thread._loop)  # type: ignore[union-attr]
    result = fut.result(60)
    if isinstance(result, list):
        # an answer is one whole frame: its size prefix, then the request's correlation id
        out = b"".join(bytes(chunk) for chunk in result)
        assert struct.unpack_from(">i", out)[0] == len(out) - 4
        assert out[4:8] == frame[4:8]
    else:
        assert result in ("closed", None)  # None: no answer (a produce with acks=0)
    with Wire(b.bootstrap) as w:
        from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse

        resp = w.request(ApiVersionsRequest(), 0)
        assert isinstance(resp, ApiVersionsResponse)
        assert resp.error_code == 0
        assert {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}[18] == SUPPORTED[18]
