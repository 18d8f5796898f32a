"""kafkajs 2.2.4 (Node.js) against riverbed. Skipped when node or the npm install is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration
NODE_DIR = Path(__file__).parent / "node"
if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir():
    pytest.skip("node or kafkajs not installed (scripts/setup dev installs them)", allow_module_level=True)


def run_node(script: str, broker: EmbeddedBroker, *args: str) -> str:
    env = {**os.environ, "BOOTSTRAP": broker.bootstrap}
    out = subprocess.run(["node", script, *args], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def read_all(broker: EmbeddedBroker, topic: str, partitions: int, expected: int, isolation: str = "read_committed") -> list[object]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "js", "enable.auto.commit": False, "isolation.level": isolation})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: list[object] = []
        deadline = time.monotonic() + 15
        while len(got) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m)
        return got
    finally:
        c.close()


def test_kafkajs_admin_and_producer(broker: EmbeddedBroker, topic_name: str) -> None:
    summary = json.loads(run_node("roundtrip.js", broker, topic_name).strip().splitlines()[-1])
    assert summary["created"] is True
    assert summary["partitions"] == 3
    assert summary["brokers"] == 1
    assert sum(int(o["high"]) for o in summary["offsets"]) == 31
    got = read_all(broker, topic_name, 3, 31)
    assert len(got) == 31
    partition_of: dict[bytes, set[int]] = {}
    for m in got:
        partition_of.setdefault(m.key(), set()).add(m.partition())  # type: ignore[attr-defined]
        if m.key() != b"gz":  # type: ignore[attr-defined]
            headers = dict(m.headers())  # type: ignore[attr-defined]
            assert headers["src"] == b"kafkajs"
            assert m.value() == f"value-{int(headers['idx'])}".encode()  # type: ignore[attr-defined]
    assert all(len(p) == 1 for p in partition_of.values())
    assert any(m.value() == b"gzipped" for m in got)  # type: ignore[attr-defined]


def test_lecture_producer_runs_unchanged(broker: EmbeddedBroker) -> None:
    out = run_node("lecture_producer.js", broker)
    assert "Order event sent successfully!" in out
    got = read_all(broker, "ecommerce-orders", 1, 1)
    assert got[0].key() == b"user_id_bob"  # type: ignore[attr-defined]
    assert json.loads(got[0].value())["orderId"] == "A123"  # type: ignore[attr-defined]


def test_kafkajs_group_consumer_reads_back(broker: EmbeddedBroker, topic_name: str) -> None:
    run_node("roundtrip.js", broker, topic_name)  # 31 records: keys, values, headers
    rows = [json.loads(line) for line in run_node("group_consume.js", broker, topic_name, "js-group", "31").splitlines()]
    assert len(rows) == 31
    partition_of: dict[str, set[int]] = {}
    for r in rows:
        partition_of.setdefault(r["key"], set()).add(r["partition"])
        if r["key"] != "gz":
            assert r["headers"]["src"] == "kafkajs"
            assert r["value"] == f"value-{r['headers']['idx']}"
        assert int(r["timestamp"]) > 0
    assert all(len(p) == 1 for p in partition_of.values())
    # the group committed: a second run of the same group has nothing left to read
    d = broker.call(broker.broker.groups.coordinator.fetch_offsets, "js-group", None)
    assert sum(off for _t, _p, off, *_ in d[1]) == 31


def test_lecture_consumer_receives_the_order(broker: EmbeddedBroker) -> None:
    run_node("lecture_producer.js", broker)
    row = json.loads(run_node("lecture_consumer.js", broker).strip().splitlines()[-1])
    assert row["topic"] == "ecommerce-orders" and row["key"] == "user_id_bob"
    assert json.loads(row["value"])["item"] == "Laptop"


def test_kafkajs_transactions(broker: EmbeddedBroker, topic_name: str) -> None:
    """kafkajs transactional producer: commit, abort, sendOffsets; its read_committed consumer
    sees only the committed records; librdkafka read_uncommitted sees the aborted ones too."""
    out = json.loads(run_node("transactions.js", broker, topic_name, topic_name + "-src"))
    assert sorted(out["values"]) == ["committed-1", "committed-2", "from-etl"]
    (entry,) = out["offsets"]
    assert entry["partitions"] == [{"partition": 0, "offset": "3", "metadata": None}] or entry["partitions"][0]["offset"] == "3"
    everything = [m.value() for m in read_all(broker, topic_name, 2, 5, "read_uncommitted")]
    assert sorted(everything) == [b"aborted-1", b"aborted-2", b"committed-1", b"committed-2", b"from-etl"]
