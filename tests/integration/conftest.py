from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from riverbed.testing import EmbeddedBroker

_n = itertools.count()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:80]
    return f"{base}-{os.getpid()}-{next(_n)}"


@pytest.fixture
def broker(riverbed_broker: EmbeddedBroker) -> Iterator[EmbeddedBroker]:
    yield riverbed_broker
