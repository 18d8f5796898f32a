"""Fault check, by hand: an AggregateOwner keeps appending across a broker kill -9 and restart,
with every command answered once and no aggregate version appended twice.

    .venv/bin/python benchmarks/patterns_broker_restart.py [--commands 300]

`riverbed serve` as a child process; one owner (2 partitions) and a CommandBus in this
process; the broker is killed with SIGKILL and restarted half-way through the commands. With
librdkafka 2.16 the owner's surviving transactional producers hang in
send_offsets_to_transaction after the restart; the owner's deadline (txn_timeout 2 s) replaces
them and replays the partitions. (The order-saga example does the same for sagas, in the suite.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from riverbed.client import ClusterSettings  # noqa: E402
from riverbed.patterns import AggregateOwner, CommandBus, EventStore, Repository  # noqa: E402
from riverbed.patterns.envelope import Envelope  # noqa: E402
from riverbed.testing import BrokerProcess  # noqa: E402
from tests.integration.patterns_domain import Counter, Increment, types  # noqa: E402
from tests.integration.test_patterns_aggregates import _read_topic  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=300)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="owner-restart-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", extra=["--log-level", "WARNING", "--set", "group.initial.rebalance.delay.ms=0"]).start()
        try:
            settings = ClusterSettings(bootstrap=broker.bootstrap)
            store = EventStore(settings, "counter", partitions=2, prefix="r.")
            store.ensure_topics()
            owner = AggregateOwner(store, Counter, types, "app")
            owner.txn_timeout = 2.0
            owner.wait_owned()
            bus = CommandBus(store, types)
            sent = []
            for i in range(args.commands):
                sent.append(bus.send(f"k{i % 5}", Increment(1)))
                if i % 20 == 0:
                    bus.flush()
                    owner.poll(0.05)
                if i == args.commands // 2:
                    broker.kill()
                    broker.start()
            deadline = time.monotonic() + 120
            while any(c not in bus.seen for c in sent) and time.monotonic() < deadline:
                owner.poll(0.05)
                bus.collect(0.05)
            owner.close()
            repo = Repository(store, Counter, types)
            total = sum(repo.load(f"k{j}").total for j in range(5))
            repo.close()
            events = [Envelope.decode(m.value()) for m in _read_topic(settings, store.events_topic, store.partitions)]
            versions: dict[str, list[int]] = {}
            for e in events:
                versions.setdefault(e.aggregate_id, []).append(e.aggregate_version)
            out = {
                "commands": len(sent), "answered": sum(c in bus.seen for c in sent), "duplicate_results": bus.duplicates,
                "accepted": sum(bus.seen[c].accepted for c in sent if c in bus.seen), "total_in_aggregates": total,
                "versions_contiguous": all(v == list(range(1, len(v) + 1)) for v in versions.values()),
                "each_command_once": len({e.command_id for e in events}) == len(events),
            }
            print(json.dumps(out))
            ok = out["answered"] == out["accepted"] == out["total_in_aggregates"] == len(sent) and not bus.duplicates and out["versions_contiguous"] and out["each_command_once"]
            bus.close()
            return 0 if ok else 1
        finally:
            broker.terminate()


if __name__ == "__main__":
    sys.exit(main())
