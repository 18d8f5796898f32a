"""The broker: one handler per API key, turning requests into calls on storage and metadata."""

from .broker import Broker
from .config import (
    BrokerConfig,
    ListenerConfig,
    ListenerConfigError,
    ListenerSecurity,
    parse_listeners,
)

__all__ = ["Broker", "BrokerConfig", "ListenerConfig", "ListenerConfigError", "ListenerSecurity", "parse_listeners"]
