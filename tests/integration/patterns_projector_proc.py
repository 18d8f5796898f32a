"""A PostgreSQL projector as a child process, for the kill -9 test (test_patterns_projections.py).

usage: python patterns_projector_proc.py BOOTSTRAP TOPIC DSN NAME

Projects TOPIC into schema NAME until killed; prints ``applied N`` after each batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from riverbed.client import ClusterSettings
from riverbed.patterns.projections import PostgresProjector
from tests.integration.patterns_domain import CounterTable, types


def main() -> None:
    bootstrap, topic, dsn, name = sys.argv[1:5]
    proj = PostgresProjector(ClusterSettings(bootstrap=bootstrap), [topic], dsn, name, CounterTable(), types=types, batch=200)
    while True:
        if proj.poll(0.5):
            print(f"applied {proj.applied}", flush=True)


if __name__ == "__main__":
    main()
