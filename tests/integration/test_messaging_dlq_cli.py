"""``riverbed dlq list|show|replay|purge`` as a subprocess against a real broker, on dead
letters written by the DLQ policy."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from riverbed.messaging.deadletter import DeadLetterConsumer, RetryPolicy, create_topics, header
from riverbed.testing import EmbeddedBroker

from .messaging_helpers import consumer, producer, read_topic, wait_until

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riverbed", *args], capture_output=True, text=True, timeout=120)


def test_list_show_replay_purge(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=1, retry_delays=())
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    p = producer(bootstrap)
    for value in (b"ok-1", b"bad-2", b"ok-3", b"bad-4"):
        p.produce(topic, key=value[-1:], value=value, headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
    assert p.flush(30) == 0
    handled: list[bytes] = []

    def handle(msg: Any) -> None:
        if msg.value().startswith(b"bad"):
            raise ValueError(f"cannot parse {msg.value().decode()}")
        handled.append(msg.value())

    c = consumer(bootstrap, f"g-{topic}")
    dlc = DeadLetterConsumer(c, p, handle, policy, group=f"g-{topic}")
    dlc.subscribe([topic])
    try:
        wait_until(lambda: len(read_topic(bootstrap, f"{topic}.DLQ", 2, timeout=1)) == 2, "2 dead letters", step=lambda: dlc.poll(0.2))
    finally:
        c.close()

    out = cli("dlq", "list", "-b", bootstrap)
    assert out.returncode == 0, out.stderr
    assert [line.split() for line in out.stdout.splitlines() if line.startswith(topic)] == [[f"{topic}.DLQ", "2"]]

    out = cli("dlq", "show", f"{topic}.DLQ", "-b", bootstrap, "--format", "json", "--stack")
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(d["offset"], d["original"], d["exception"], d["message"], d["value"], d["attempts"]) for d in docs] == [
        (0, f"{topic}[0]@1", "builtins.ValueError", "cannot parse bad-2", "bad-2", "1"),
        (1, f"{topic}[0]@3", "builtins.ValueError", "cannot parse bad-4", "bad-4", "1"),
    ]
    assert "Traceback" in docs[0]["stacktrace"]
    text = cli("dlq", "show", f"{topic}.DLQ", "-b", bootstrap, "-o", "1")
    assert text.returncode == 0 and f"from {topic}[0]@3" in text.stdout and "bad-2" not in text.stdout

    assert "exactly one --offset" in cli("dlq", "replay", f"{topic}.DLQ", "-b", bootstrap, "--value", "x").stderr
    out = cli("dlq", "replay", f"{topic}.DLQ", "-b", bootstrap, "-o", "0", "--value", "ok-2-fixed", "-H", "edited-by=ops")
    assert out.returncode == 0, out.stderr
    assert "replayed 1 record(s)" in out.stdout
    *_, replayed = read_topic(bootstrap, topic, 5)
    assert replayed.value() == b"ok-2-fixed" and replayed.key() == b"2"
    h = replayed.headers()
    assert header(h, "riverbed.dlq.replayed-from") == f"{topic}.DLQ:0:0"
    assert header(h, "edited-by") == "ops"
    assert header(h, "traceparent") == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert not any(k.startswith("riverbed.errors.") for k, _ in h)

    out = cli("dlq", "purge", f"{topic}.DLQ", "-b", bootstrap)
    assert "add --yes" in out.stdout
    out = cli("dlq", "purge", f"{topic}.DLQ", "-b", bootstrap, "--yes")
    assert out.returncode == 0, out.stderr
    out = cli("dlq", "list", "-b", bootstrap)
    assert [line.split() for line in out.stdout.splitlines() if line.startswith(topic)] == [[f"{topic}.DLQ", "0"]]
    assert cli("dlq", "show", f"{topic}-missing.DLQ", "-b", bootstrap).returncode == 1
