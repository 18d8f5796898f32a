"""Two instances of one riverbed.streams app; kill -9 one at random moments, five times, while
records arrive. With exactly_once the committed output has every count per key exactly once
(1, 2, ..., n: nothing lost, nothing duplicated) and the final counts are exact: the survivor
takes the partitions over and restores their state from the changelog."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from riverbed.streams import LONG
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

WORKER = str(Path(__file__).parent / "procs" / "streams_counter.py")
KEYS = [f"user-{i}" for i in range(40)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


class Worker:
    def __init__(self, bootstrap: str, state: Path, log: Path, guarantee: str, standbys: int = 0) -> None:
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen([sys.executable, WORKER, bootstrap, "counter", str(state), guarantee, str(standbys)],
                                         stdout=f, stderr=f)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.mark.parametrize("standbys", [0, 1])
def test_kill_nine_exactly_once(broker: EmbeddedBroker, tmp_path: Path, standbys: int) -> None:
    """With ``standbys=1`` each worker also keeps standby copies of the other's stores while it is
    killed and replaced (the replacement usually gets the victim's partitions back before the
    survivor takes them over; test_streams_coop.py tests a takeover from standbys)."""
    bs = broker.bootstrap
    create_topics(bs, NewTopic("events", 4, 1), NewTopic("counts", 4, 1))
    rnd = random.Random(11)
    expected: dict[str, int] = {}
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 5})

    def produce(n: int) -> None:
        for _ in range(n):
            k = rnd.choice(KEYS)
            expected[k] = expected.get(k, 0) + 1
            producer.produce("events", b"x", k.encode())
        assert producer.flush(30) == 0

    reader = Consumer({"bootstrap.servers": bs, "group.id": "reader", "auto.offset.reset": "earliest",
                       "isolation.level": "read_committed", "enable.auto.commit": False})
    reader.subscribe(["counts"])
    seen: dict[str, list[int]] = {}
    n_seen = 0

    def read() -> int:
        nonlocal n_seen
        for m in reader.consume(500, 0.2):
            if m.error() is None:
                seen.setdefault(m.key().decode(), []).append(LONG.deserialize(m.value()) or 0)
                n_seen += 1
        return n_seen

    workers = [Worker(bs, tmp_path / f"state-{i}", tmp_path / f"worker-{i}.log", "exactly_once", standbys)
               for i in range(2)]
    try:
        for round_ in range(5):
            produce(300)
            target = sum(expected.values()) - 200  # mid-stream: some of this round's counts are out
            deadline = time.monotonic() + 120
            while read() < target:
                assert time.monotonic() < deadline, f"round {round_}: {n_seen} counts of {target}"
                for w in workers:
                    assert w.alive(), w.log.read_text()[-3000:]
            victim = rnd.randrange(2)
            workers[victim].kill()
            # the replacement reuses the victim's state directory (stale by now) every other round
            state = tmp_path / (f"state-{victim}" if round_ % 2 else f"state-{victim}-{round_}")
            workers[victim] = Worker(bs, state, tmp_path / f"worker-{victim}.log", "exactly_once", standbys)
        produce(300)
        total = sum(expected.values())
        deadline = time.monotonic() + 180
        while read() < total:
            assert time.monotonic() < deadline, f"{n_seen} of {total} counts"
            for w in workers:
                assert w.alive(), w.log.read_text()[-3000:]
        assert read() == total
        for k, n in expected.items():
            assert seen[k] == list(range(1, n + 1)), (k, seen[k][-10:])
    finally:
        for w in workers:
            if w.alive():
                w.kill()
        reader.close()
