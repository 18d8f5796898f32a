"""kcat (Debian's 1.7.1, on librdkafka 2.0.2) against riverbed. Skipped if kcat is missing."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from confluent_kafka.admin import NewTopic

from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
if KCAT is None:
    pytest.skip("kcat not installed (scripts/setup dev installs it)", allow_module_level=True)


def kcat(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_kcat_metadata_produce_consume(broker: EmbeddedBroker, topic_name: str) -> None:
    # kcat cannot create topics; the 3-partition topic is made with an admin client.
    create_topics(broker.bootstrap, NewTopic(topic_name, 3, 1))
    md = kcat("-b", broker.bootstrap, "-L", "-t", topic_name)
    assert "3 partitions" in md
    lines = "".join(f"key{i % 4}:value{i}\n" for i in range(40))
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-K", ":", "-H", "origin=kcat", "-X", "acks=all", stdin=lines)
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e", "-q", "-f", "%p|%k|%s|%h|%T\n")
    rows = [r.split("|") for r in out.strip().splitlines()]
    assert len(rows) == 40
    partition_of: dict[str, set[str]] = {}
    for part, key, value, headers, ts in rows:
        i = int(value.removeprefix("value"))
        assert key == f"key{i % 4}"
        assert headers == "origin=kcat"
        assert int(ts) > 0
        partition_of.setdefault(key, set()).add(part)
    assert all(len(p) == 1 for p in partition_of.values())


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compression(broker: EmbeddedBroker, topic_name: str, codec: str) -> None:
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-z", codec, stdin="".join(f"{codec}-{i}\n" for i in range(20)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e", "-q")
    assert out.split() == [f"{codec}-{i}" for i in range(20)]
