"""The `riverbed` command: serve with no arguments, topic admin, produce and consume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration


def cli(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "riverbed", *args], input=stdin, capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_serve_with_no_arguments_is_ready_within_a_second(tmp_path: Path) -> None:
    for port in (9092, 9644):  # the broker's and its metrics endpoint's default ports
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use on this machine")
    proc = subprocess.Popen([sys.executable, "-m", "riverbed", "serve"], cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        # "ready within a second": measured as the CPU time the process used until it listened
        # (interpreter start and imports included), which a loaded CI machine does not inflate
        # the way it does wall-clock time; the wall-clock start-up is in docs/benchmarks.md.
        # The CPU time is read just before each connection attempt, and the reading before the
        # first attempt that connects is the one checked: reading it after the connect would
        # also count what the broker does after listening (its metrics endpoint, side services)
        # for as long as a loaded machine keeps this test from running.
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 60
        while True:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            try:
                with socket.create_connection(("127.0.0.1", 9092), timeout=0.1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "not listening after 60 s"
                time.sleep(0.01)
        assert cpu < 1.0, f"used {cpu:.2f}s of CPU before listening"
        out = cli("topic", "create", "cli-default", "-p", "2")
        assert "created topic" in out.stdout
        assert (tmp_path / "riverbed-data").is_dir()
        assert (tmp_path / "riverbed-data" / "cli-default-0").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_topic_commands(broker: EmbeddedBroker, topic_name: str) -> None:
    b = broker.bootstrap
    cli("topic", "create", topic_name, "-p", "3", "-c", "retention.ms=3600000", "-b", b)
    assert topic_name in cli("topic", "list", "-b", b).stdout.split()
    desc = cli("topic", "describe", topic_name, "-b", b).stdout
    assert "PartitionCount: 3" in desc and "retention.ms=3600000" in desc
    cli("topic", "alter", topic_name, "-c", "retention.bytes=1000000", "--delete-config", "retention.ms", "-p", "4", "-b", b)
    desc = cli("topic", "describe", topic_name, "-b", b).stdout
    assert "PartitionCount: 4" in desc and "retention.bytes=1000000" in desc and "retention.ms" not in desc
    bad = cli("topic", "create", topic_name, "-b", b, check=False)
    assert bad.returncode != 0 and "already exists" in bad.stderr.lower()
    cli("topic", "delete", topic_name, "-b", b)
    assert topic_name not in cli("topic", "list", "-b", b).stdout.split()


def test_a_mistyped_topic_is_an_error_not_a_new_topic(broker: EmbeddedBroker, topic_name: str) -> None:
    """On a broker that auto-creates topics, asking Metadata for one topic by name creates it:
    the commands that look a topic up must not do that."""
    b = broker.bootstrap
    for args in (("topic", "describe", f"{topic_name}-a"), ("group", "reset-offsets", "g", "--topic", f"{topic_name}-b", "--to-earliest"),
                 ("consume", f"{topic_name}-c", "--timeout", "1")):
        r = cli(*args, "-b", b, check=False)
        assert r.returncode != 0 and ("not found" in r.stderr.lower() or "unknown topic" in r.stderr.lower()), (args, r.stderr)
    assert not [t for t in cli("topic", "list", "-b", b).stdout.split() if t.startswith(topic_name)]


def test_produce_and_consume(broker: EmbeddedBroker, topic_name: str) -> None:
    b = broker.bootstrap
    cli("topic", "create", topic_name, "-p", "2", "-b", b)
    cli("produce", topic_name, "-b", b, "-k", "user_id_bob", "-H", "source=cli", "-v", '{"orderId": "A123"}')
    cli("produce", topic_name, "-b", b, "-K", ":", stdin="k1:v1\nk2:v2\nnokey\n")
    text = cli("consume", topic_name, "-b", b, "--from-beginning", "--timeout", "30").stdout
    assert "key=user_id_bob source=cli value={\"orderId\": \"A123\"}" in text
    assert "key=k1" in text and "value=v2" in text and "key=null value=nokey" in text
    rows = [json.loads(line) for line in cli("consume", topic_name, "-b", b, "--from-beginning", "--format", "json", "--timeout", "30").stdout.splitlines()]
    assert len(rows) == 4
    bob = next(r for r in rows if r["key"] == "user_id_bob")
    assert bob["headers"] == [["source", "cli"]] and bob["timestamp"] > 0
    limited = cli("consume", topic_name, "-b", b, "--from-beginning", "-n", "2").stdout.splitlines()
    assert len(limited) == 2


def test_bad_config_is_reported(tmp_path: Path) -> None:
    out = cli("serve", "--set", "no.such.setting=1", "--data-dir", str(tmp_path), check=False)
    assert out.returncode == 2 and "no.such.setting" in out.stderr
    cfg = tmp_path / "r.toml"
    cfg.write_text('listen = "not-an-address"\n')
    out = cli("serve", "--config", str(cfg), check=False)
    assert out.returncode == 2 and "HOST:PORT" in out.stderr


def test_env_and_file_config(tmp_path: Path) -> None:
    from riverbed.cli.config import load_config

    cfg = tmp_path / "r.toml"
    cfg.write_text('listen = "127.0.0.1:9000"\ndata_dir = "/a"\n[kafka]\n"log.retention.ms" = 1000\n')
    config, _ = load_config(cfg, env={"RIVERBED_DATA_DIR": "/b"}, flags={"listen": "127.0.0.1:9001"})
    assert (config.host, config.port) == ("127.0.0.1", 9001)
    assert str(config.data_dir) == "/b"
    assert config.log_defaults == {"log.retention.ms": "1000"}
    assert os.path.basename(str(load_config(None, env={})[0].data_dir)) == "riverbed-data"


def test_txn_commands(broker: EmbeddedBroker, topic_name: str) -> None:
    from confluent_kafka import Producer

    b = broker.bootstrap
    cli("topic", "create", topic_name, "-p", "2", "--bootstrap", b)
    p = Producer({"bootstrap.servers": b, "transactional.id": "cli-txn"})
    p.init_transactions(20)
    p.begin_transaction()
    p.produce(topic_name, value=b"x", partition=1)
    p.flush(10)
    listed = cli("txn", "list", "--bootstrap", b).stdout
    assert "cli-txn" in listed and "Ongoing" in listed
    assert "cli-txn" not in cli("txn", "list", "--state", "CompleteCommit", "--bootstrap", b).stdout
    described = cli("txn", "describe", "cli-txn", "--bootstrap", b).stdout
    assert "State:            Ongoing" in described
    assert f"{topic_name}-1" in described
    producers = cli("txn", "producers", topic_name, "-p", "1", "--bootstrap", b).stdout.splitlines()
    assert len(producers) == 2 and producers[1].split()[-1] == "0"  # the open transaction starts at offset 0
    p.commit_transaction(20)
    assert "CompleteCommit" in cli("txn", "describe", "cli-txn", "--bootstrap", b).stdout
    missing = cli("txn", "describe", "nobody", "--bootstrap", b, check=False)
    assert missing.returncode == 1 and "TRANSACTIONAL_ID_NOT_FOUND" in missing.stderr
    bad = cli("txn", "list", "--state", "Sleeping", "--bootstrap", b, check=False)
    assert bad.returncode == 1 and "Sleeping" in bad.stderr
