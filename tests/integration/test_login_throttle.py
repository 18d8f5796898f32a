"""Failed logins slow down the failing client only (issue 20, item 9): while clients with a
stale password keep retrying from one address, good clients (confluent-kafka, SCRAM) from the
same address log in at once; a password guess from that address is still answered late."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from riverbed.broker import ListenerConfig
from riverbed.cli.main import main as riverbed_main
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "alice-secret"
SASL_AUTHENTICATION_FAILED = 58


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    listeners = [ListenerConfig(n, n, "127.0.0.1", 0) for n in ("PLAINTEXT", "SASL_PLAINTEXT")]
    with EmbeddedBroker(tmp_path / "data", listeners=listeners) as broker:
        assert riverbed_main(["user", "add", USER, "--password", PASSWORD, "-b", broker.bootstrap_for("PLAINTEXT")]) == 0
        yield broker


def conf(broker: EmbeddedBroker, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": broker.bootstrap_for("SASL_PLAINTEXT"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": USER,
        "sasl.password": password,
    }


class StaleClient:
    """A long-lived confluent-kafka producer with a stale password: librdkafka reconnects and
    fails again, as fast as its reconnect backoff lets it, until stopped."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        self.failures = 0
        self.stop = threading.Event()
        settings = {**conf(broker, "stale-password"), "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200, "error_cb": self._error}
        self.producer = Producer(settings)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _error(self, err: Any) -> None:
        if "Authentication failed" in err.str():
            self.failures += 1

    def _run(self) -> None:
        while not self.stop.is_set():
            self.producer.poll(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        del self.producer


def _request(key: int, version: int, corr: int, body: bytes) -> bytes:
    payload = struct.pack(">hhih", key, version, corr, 1) + b"t" + body
    return struct.pack(">i", len(payload)) + payload


def _read_frame(s: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return buf

    return exact(struct.unpack(">i", exact(4))[0])


def _plain_attempt(broker: EmbeddedBroker, password: str) -> socket.socket:
    """SaslHandshake v1 (PLAIN), then a SaslAuthenticate v1 with the credentials; the
    answer to the latter is left unread."""
    host, port = broker.bootstrap_for("SASL_PLAINTEXT").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(_request(17, 1, 1, struct.pack(">h", 5) + b"PLAIN"))
    assert _read_frame(s)[4:6] == b"\x00\x00"
    token = f"\0{USER}\0{password}".encode()
    s.sendall(_request(36, 1, 2, struct.pack(">i", len(token)) + token))
    return s


def _error_code(s: socket.socket) -> int:
    resp = _read_frame(s)
    return int(struct.unpack(">h", resp[4:6])[0])


def _answered(s: socket.socket) -> bool:
    readable, _, _ = select.select([s], [], [], 0)
    return bool(readable)


def good_login(broker: EmbeddedBroker) -> None:
    admin = AdminClient(conf(broker, PASSWORD))
    md = admin.list_topics(timeout=60)  # needs an authenticated connection
    assert md.brokers


def test_stale_password_clients_do_not_lock_out_good_ones(sasl_broker: EmbeddedBroker) -> None:
    stale = [StaleClient(sasl_broker) for _ in range(3)]
    try:
        # Let the stale clients fail often enough that failures from this address (and user)
        # are answered at the capped backoff.
        deadline = time.monotonic() + 120
        while sum(c.failures for c in stale) < 8:
            assert time.monotonic() < deadline, "the stale clients did not fail"
            time.sleep(0.1)
        # A password guess from the same address: its failure answer is held back...
        guess = _plain_attempt(sasl_broker, "guess-1")
        sent = time.monotonic()
        try:
            # ...while good clients from the same address, logging in meanwhile, get in.
            for _ in range(3):
                good_login(sasl_broker)
            assert not _answered(guess), "the guess was answered before the good logins completed"
            before = sum(c.failures for c in stale)
            # The stale clients are still hammering (and still failing).
            while sum(c.failures for c in stale) == before:
                assert time.monotonic() < deadline + 120, "the stale clients stopped failing"
                time.sleep(0.1)
            # The guess is refused, late: it was slowed down.
            assert _error_code(guess) == SASL_AUTHENTICATION_FAILED
            assert time.monotonic() - sent >= 2.0
        finally:
            guess.close()
        # A good raw login from the same address is answered (with NONE) while a second
        # guess, sent first, still waits for its answer.
        guess = _plain_attempt(sasl_broker, "guess-2")
        good = _plain_attempt(sasl_broker, PASSWORD)
        try:
            assert _error_code(good) == 0
            assert not _answered(guess)
        finally:
            good.close()
            guess.close()
    finally:
        for c in stale:
            c.close()


def test_connection_failed_authentication_delay_setting(tmp_path: Path) -> None:
    """Kafka's connection.failed.authentication.delay.ms: parsed from --set, reported by
    DescribeConfigs, and the least time a failure's answer is held back."""
    from confluent_kafka.admin import ConfigResource

    from riverbed.cli.config import load_config

    cfg, _ = load_config(env={}, kafka_flags={"connection.failed.authentication.delay.ms": "1500"})
    assert cfg.connection_failed_authentication_delay_ms == 1500
    listeners = [ListenerConfig(n, n, "127.0.0.1", 0) for n in ("PLAINTEXT", "SASL_PLAINTEXT")]
    with EmbeddedBroker(tmp_path / "data", listeners=listeners, connection_failed_authentication_delay_ms=1500) as broker:
        assert riverbed_main(["user", "add", USER, "--password", PASSWORD, "-b", broker.bootstrap_for("PLAINTEXT")]) == 0
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_for("PLAINTEXT")})
        res = ConfigResource(ConfigResource.Type.BROKER, "1")
        configs = admin.describe_configs([res])[res].result(15)
        assert configs["connection.failed.authentication.delay.ms"].value == "1500"
        # the first failure of a fresh address and user: no backoff yet, the setting only
        sent = time.monotonic()
        with _plain_attempt(broker, "wrong") as s:
            assert _error_code(s) == SASL_AUTHENTICATION_FAILED
        assert time.monotonic() - sent >= 1.5
        # a good login right after it is not held back by anything: it is answered before a
        # failure sent first
        guess = _plain_attempt(broker, "wrong-again")
        try:
            with _plain_attempt(broker, PASSWORD) as good:
                assert _error_code(good) == 0
            assert not _answered(guess)
            assert _error_code(guess) == SASL_AUTHENTICATION_FAILED
        finally:
            guess.close()
