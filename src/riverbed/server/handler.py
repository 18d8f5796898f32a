"""The interface between the transport and whoever answers requests (the broker)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from riverbed.protocol.primitives import Buffer

# A handler answers a request frame with response chunks (a whole frame, size prefix
# included), None for "no response" (acks=0 produce), or an awaitable of either.
Reply = list[Buffer] | None | Awaitable[list[Buffer] | None]


class ReplyThenClose(list):  # type: ignore[type-arg]
    """A reply after which the server closes the connection (a failed SASL authentication
    gets its error response, then the connection ends)."""


class CloseConnection(Exception):
    """Raised by a handler to make the server close the connection (as Kafka does for an
    unknown API key or a request it cannot parse)."""


@dataclass(slots=True)
class ConnectionInfo:
    peer: str
    listener: str
    connection_id: int
    state: dict[str, Any] = field(default_factory=dict)  # per-connection handler state


class Handler(Protocol):
    def handle(self, conn: ConnectionInfo, frame: bytearray) -> Reply: ...

    def connection_closed(self, conn: ConnectionInfo) -> None: ...
