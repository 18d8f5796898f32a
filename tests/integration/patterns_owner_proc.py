"""An AggregateOwner of the test counter as a child process, for the kill -9 test in
test_patterns_aggregates.py.

usage: python patterns_owner_proc.py BOOTSTRAP PREFIX PARTITIONS

Polls until killed; prints ``handled N`` after each batch of commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from riverbed.client import ClusterSettings
from riverbed.patterns import AggregateOwner, EventStore
from tests.integration.patterns_domain import Counter, types


def main() -> None:
    bootstrap, prefix, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = EventStore(ClusterSettings(bootstrap=bootstrap), "counter", partitions=partitions, prefix=prefix)
    owner = AggregateOwner(store, Counter, types, "app", consumer_config={"session.timeout.ms": 6000})
    handled = 0
    while True:
        n = len(owner.poll(0.1))
        if n:
            handled += n
            print(f"handled {handled}", flush=True)


if __name__ == "__main__":
    main()
