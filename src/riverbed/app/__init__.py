"""Composition: a broker and its listener with one lifecycle (used by the CLI and by
``riverbed.testing``). Picks the concrete engines; knows nothing of argv or pytest."""

from .runtime import BrokerThread, RiverbedApp

__all__ = ["BrokerThread", "RiverbedApp"]
