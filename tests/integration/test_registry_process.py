"""`riverbed registry` as users run it: a child process against `riverbed serve` (also a child
process), driven by the `riverbed schema` CLI and confluent-kafka's client; kill -9 of the
broker in the middle of registrations."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from riverbed.testing import BrokerProcess, free_port

pytestmark = pytest.mark.integration


class RegistryProcess:
    def __init__(self, bootstrap: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bootstrap = bootstrap
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> RegistryProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "riverbed", "registry", "--bootstrap", self.bootstrap, "--listen", f"127.0.0.1:{self.port}", "--log-level", "INFO"], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError(self.log_path.read_text()[-2000:])

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        code = self.proc.wait(30)
        self.proc = None
        return code


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[BrokerProcess, RegistryProcess]]:
    broker = BrokerProcess(tmp_path / "data").start()
    registry = RegistryProcess(broker.bootstrap, tmp_path / "registry.log").start()
    try:
        yield broker, registry
    finally:
        if registry.proc is not None:
            registry.proc.kill()
            registry.proc.wait(10)
        broker.kill()


def cli(registry: RegistryProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riverbed", "schema", *args, "--registry", registry.url], input=stdin, capture_output=True, text=True, timeout=60)


ORDER = {"type": "record", "name": "OrderEvent", "fields": [{"name": "orderId", "type": "string"}]}


def test_cli_against_the_standalone_service(cluster: tuple[BrokerProcess, RegistryProcess], tmp_path: Path) -> None:
    _broker, registry = cluster
    v1 = tmp_path / "v1.avsc"
    v1.write_text(json.dumps(ORDER))
    r = cli(registry, "register", "orders-value", str(v1))
    assert r.returncode == 0 and r.stdout.strip() == "registered orders-value: id 1", r.stderr
    v2 = tmp_path / "v2.avsc"
    v2.write_text(json.dumps({**ORDER, "fields": [*ORDER["fields"], {"name": "amount", "type": "double", "default": 0.0}]}))
    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps({**ORDER, "fields": [*ORDER["fields"], {"name": "qty", "type": "int"}]}))
    assert cli(registry, "check", "orders-value", str(v2)).stdout.strip() == "compatible"
    r = cli(registry, "check", "orders-value", str(bad))
    assert r.returncode == 1 and "INCOMPATIBLE" in r.stdout and "qty" in r.stdout
    r = cli(registry, "register", "orders-value", str(bad))
    assert r.returncode == 1 and "HTTP 409" in r.stderr
    assert cli(registry, "register", "orders-value", str(v2)).returncode == 0
    assert cli(registry, "versions", "orders-value").stdout.split() == ["1", "2"]
    got = json.loads(cli(registry, "get", "orders-value", "--format", "json").stdout)
    assert (got["version"], got["id"]) == (2, 2)
    assert cli(registry, "list").stdout.split() == ["orders-value"]
    assert "BACKWARD" in cli(registry, "config").stdout
    assert "FULL" in cli(registry, "config", "orders-value", "--set", "FULL").stdout
    assert cli(registry, "delete", "orders-value", "--version", "1").returncode == 0
    assert cli(registry, "versions", "orders-value").stdout.split() == ["2"]
    r = cli(registry, "get", "nope")
    assert r.returncode == 1 and "40401" in r.stderr


def test_kill_9_of_the_broker_during_registrations(cluster: tuple[BrokerProcess, RegistryProcess], tmp_path: Path) -> None:
    """Every registration acknowledged before the broker is killed is there after the restart
    with the same id, and new ids never reuse an old one."""
    broker, registry = cluster
    acked: dict[str, int] = {}
    stop = threading.Event()
    done = threading.Event()

    def register() -> None:
        with SchemaRegistryClient({"url": registry.url, "max.retries": 0}) as client:
            i = 0
            while not stop.is_set():
                schema = Schema(json.dumps({**ORDER, "name": f"E{i}"}), "AVRO")
                # once the broker is gone a registration fails (50001/50002): not acknowledged
                with contextlib.suppress(Exception):
                    acked[f"s{i}"] = client.register_schema(f"s{i}", schema)
                i += 1
                if i >= 20 and not done.is_set():
                    done.set()
        done.set()

    t = threading.Thread(target=register)
    t.start()
    assert done.wait(120), "registrations did not get going"
    broker.kill()
    stop.set()
    t.join(120)
    assert len(acked) >= 20
    broker.start()
    registry.stop()  # a fresh registry replays _schemas from the restarted broker
    registry.start()
    with SchemaRegistryClient({"url": registry.url}) as client:
        for subject, schema_id in acked.items():
            assert client.get_latest_version(subject).schema_id == schema_id, subject
        new = client.register_schema("after-restart", Schema(json.dumps({**ORDER, "name": "AfterRestart"}), "AVRO"))
    assert new > max(acked.values())


def test_serve_embeds_the_registry_and_it_dies_with_the_broker(tmp_path: Path) -> None:
    port = free_port()
    broker = BrokerProcess(tmp_path / "data", extra=["--registry-listen", f"127.0.0.1:{port}"]).start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the embedded registry did not answer"
            time.sleep(0.05)
        with SchemaRegistryClient({"url": url}) as client:
            assert client.register_schema("embedded", Schema(json.dumps(ORDER), "AVRO")) == 1
        children = psutil.Process(broker.proc.pid).children() if broker.proc is not None else []
        assert len(children) == 1
        child = children[0]
    finally:
        broker.kill()  # kill -9: the child gets SIGTERM from the kernel (PR_SET_PDEATHSIG)
    child.wait(30)
    assert not child.is_running()
