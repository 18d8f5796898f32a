"""Test helpers for users' own suites: a real riverbed broker on a free port, no Docker.

In pytest the plugin (installed with riverbed) gives two fixtures:

- ``riverbed_broker``: a broker per test, in a background thread, with a temp data dir.
- ``riverbed_session_broker``: one broker shared by the whole test session.

Both yield an :class:`EmbeddedBroker`; use ``broker.bootstrap`` as ``bootstrap.servers``.
They set ``FIXTURE_DEFAULTS``; ``@pytest.mark.riverbed(**settings)`` or the
``riverbed_broker_factory(**settings)`` fixture start a broker with other settings.
Outside pytest, ``with EmbeddedBroker() as broker: ...`` does the same, and
:class:`BrokerProcess` runs ``riverbed serve`` as a separate process (for crash tests).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from riverbed.app import BrokerThread
from riverbed.broker import BrokerConfig

__all__ = ["EXAMPLE_BROKER_FLAGS", "FIXTURE_DEFAULTS", "BrokerProcess", "EmbeddedBroker", "SqlServerProcess", "example_cluster",
           "free_port"]

# What the pytest fixtures change from a plain broker, as Kafka's test images do: no 3 s wait
# for more members before a new group's first rebalance, and topics asked for with a
# replication factor above 1 (applications' production setting) created with one replica.
FIXTURE_DEFAULTS: dict[str, Any] = {"group_initial_rebalance_delay_ms": 0, "accept_replication_factor": True}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A riverbed broker in this process, on its own event loop thread."""

    def __init__(self, data_dir: Path | None = None, **settings: Any) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="riverbed-")) if data_dir is None else data_dir
        self.config = BrokerConfig(data_dir=self.data_dir, port=0, **settings)
        self._thread: BrokerThread | None = None

    def start(self) -> EmbeddedBroker:
        self._thread = BrokerThread(self.config).start()
        return self

    @property
    def bootstrap(self) -> str:
        assert self._thread is not None, "broker not started"
        return self._thread.bootstrap

    def bootstrap_for(self, listener: str) -> str:
        """The advertised HOST:PORT of one listener (``config.listeners``), by name."""
        assert self._thread is not None, "broker not started"
        return self._thread.bootstrap_for(listener)

    @property
    def broker(self) -> Any:
        """The Broker object (for white-box assertions in riverbed's own tests)."""
        assert self._thread is not None
        return self._thread.app.broker

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the broker's event loop thread."""
        assert self._thread is not None
        return self._thread.call(fn, *args)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class BrokerProcess:
    """``riverbed serve`` in a child process, for tests that kill or restart the broker."""

    def __init__(self, data_dir: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        # no embedded schema registry unless asked for (it would take port 8081)
        no_registry = [] if "--registry-listen" in self.extra else ["--no-registry"]
        # nor the metrics endpoint (it would take port 9644)
        no_metrics = [] if "--metrics-listen" in self.extra else ["--no-metrics"]
        # nor the web console (it would take port 8080)
        no_console = [] if "--console-listen" in self.extra else ["--no-console"]
        cmd = [sys.executable, "-m", "riverbed", "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir), *no_registry, *no_metrics, *no_console, *self.extra]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        logged_before = log.tell()  # the log is appended to across restarts
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.02)
                continue
            # listening is not yet started: the metrics endpoint (which can still fail and end
            # the process) starts after the listener; "riverbed ready" is printed once it has
            with open(self.log_path, "rb") as f:
                f.seek(logged_before)
                if b"riverbed ready on" in f.read():
                    return self
            time.sleep(0.02)
        raise TimeoutError(f"broker did not listen on {self.port}: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9: no flush, no clean shutdown."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.kill()



class SqlServerProcess:
    """``riverbed sql serve`` in a child process on a free port: for tests that kill or restart
    the SQL server, and for benchmarks whose clients must not share its interpreter."""

    def __init__(self, bootstrap: str, state_dir: Path, log: Path, service_id: str = "default_",
                 instance_id: str | None = None, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bootstrap = bootstrap
        self.state_dir = state_dir
        self.log = log
        self.service_id = service_id
        self.instance_id = instance_id
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> SqlServerProcess:
        """Starts the server; returns once its /healthcheck answers 200 (its command topic replayed)."""
        import httpx

        out = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        cmd = [sys.executable, "-m", "riverbed", "sql", "serve", "--bootstrap", self.bootstrap,
               "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.state_dir),
               "--service-id", self.service_id, "--log-level", "INFO",
               *(["--instance-id", self.instance_id] if self.instance_id else []), *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the SQL server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the SQL server did not start: {self.log.read_text()[-3000:]}")

    def ksql(self, text: str, **extra: Any) -> Any:
        """POST /ksql; the httpx response."""
        import httpx

        return httpx.post(f"{self.url}/ksql", json={"ksql": text, **extra}, timeout=90)

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> SqlServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# What the examples' own broker changes from `riverbed serve`'s defaults: quiet logs and no wait
# for more members before a new group's first rebalance.
EXAMPLE_BROKER_FLAGS = ["--log-level", "WARNING", "--set", "group.initial.rebalance.delay.ms=0"]


@contextlib.contextmanager
def example_cluster(bootstrap: str | None, name: str, extra: list[str] | None = None) -> Iterator[str]:
    """The cluster an example runs on: ``bootstrap`` when one was given (``--bootstrap``), else a
    ``riverbed serve`` child process on a free port with its data in a temp dir, stopped and
    removed on exit. Yields the bootstrap address."""
    if bootstrap:
        yield bootstrap
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    broker = BrokerProcess(tmp / "data", extra=[*EXAMPLE_BROKER_FLAGS, *(extra or [])])
    try:
        broker.start(timeout=60.0)
        yield broker.bootstrap
    finally:
        try:
            broker.terminate()
        except subprocess.TimeoutExpired:
            broker.kill()
        shutil.rmtree(tmp, ignore_errors=True)
