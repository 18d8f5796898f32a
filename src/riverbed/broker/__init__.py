"""The broker: one handler per API key, turning requests into calls on storage and metadata."""

from .broker import Broker
from .config import BrokerConfig

__all__ = ["Broker", "BrokerConfig"]
