"""asyncio transport: listeners, per-connection ordering, backpressure, limits, shutdown."""

from .handler import CloseConnection, ConnectionInfo, Handler, Reply, ReplyThenClose
from .server import KafkaServer, ServerConfig

__all__ = ["CloseConnection", "ConnectionInfo", "Handler", "KafkaServer", "Reply", "ReplyThenClose", "ServerConfig"]
