"""pytest plugin (registered through the ``pytest11`` entry point): broker fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import EmbeddedBroker


@pytest.fixture
def riverbed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A fresh riverbed broker for one test, on a free port with its own data dir."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("riverbed"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def riverbed_session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One riverbed broker shared by the whole test session."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("riverbed-session"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
