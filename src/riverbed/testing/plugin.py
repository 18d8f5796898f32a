"""pytest plugin (registered through the ``pytest11`` entry point): broker fixtures.

The fixtures' brokers are configured as Kafka's test images are: no initial rebalance delay
(``group.initial.rebalance.delay.ms=0``), and replication factors above 1 accepted on the
single node (``riverbed.accept.replication.factor=true``). A test passes its own settings
(``BrokerConfig`` field names) with ``@pytest.mark.riverbed(num_partitions=3)`` or by
calling ``riverbed_broker_factory(num_partitions=3)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import FIXTURE_DEFAULTS, EmbeddedBroker

BrokerFactory = Callable[..., EmbeddedBroker]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "riverbed(**settings): BrokerConfig settings for the riverbed_broker fixture (e.g. num_partitions=3)"
    )


def _marker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("riverbed"))):  # closest marker wins
        settings.update(marker.kwargs)
    return settings


@pytest.fixture
def riverbed_broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    """Starts brokers with settings of the test's choosing (``BrokerConfig`` field names over
    the fixture defaults); each is stopped at the end of the test."""
    started: list[EmbeddedBroker] = []

    def start(**settings: Any) -> EmbeddedBroker:
        broker = EmbeddedBroker(tmp_path_factory.mktemp("riverbed"), **{**FIXTURE_DEFAULTS, **settings})
        broker.start()
        started.append(broker)
        return broker

    try:
        yield start
    finally:
        for broker in reversed(started):
            broker.stop()


@pytest.fixture
def riverbed_broker(request: pytest.FixtureRequest, riverbed_broker_factory: BrokerFactory) -> EmbeddedBroker:
    """A fresh riverbed broker for one test, on a free port with its own data dir (settings
    from a ``@pytest.mark.riverbed(...)`` marker, if any)."""
    return riverbed_broker_factory(**_marker_settings(request))


@pytest.fixture(scope="session")
def riverbed_session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One riverbed broker shared by the whole test session."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("riverbed-session"), **FIXTURE_DEFAULTS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
