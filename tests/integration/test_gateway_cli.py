"""`riverbed gateway run|check` as a user runs them: a child process, a real broker, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from riverbed.gateway import sign_github
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker, free_port

from .gateway_helpers import SseReader, read_topic, wait_for

pytestmark = pytest.mark.integration

TOML = """
[gateway]
listen = "127.0.0.1:{port}"

[[webhooks.in]]
path = "/hooks/github"
topic = "gh"
verify = "github"
secret_env = "GH_SECRET"

[[push]]
path = "/push/gh"
topic = "gh"
auth = "none"
"""


def test_check_lists_routes_and_refuses_bad_files(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(TOML.format(port=1))
    r = subprocess.run(
        [sys.executable, "-m", "riverbed", "gateway", "check", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"GH_SECRET": "s", "PATH": "/usr/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "POST /hooks/github -> gh (verify github)",
        "GET/WS /push/gh <- gh (auth none, filter none, overflow drop)",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "riverbed", "gateway", "check", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin"},
    )
    assert r.returncode == 2 and "GH_SECRET" in r.stderr
    with_rest = tmp_path / "rest.toml"
    with_rest.write_text("[rest]\nenabled = true\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "riverbed",
            "gateway",
            "check",
            str(with_rest),
            "--registry-url",
            "http://127.0.0.1:18081",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin"},
    )
    assert (
        r.returncode == 0
        and r.stdout.splitlines()[-1] == "AVRO, PROTOBUF, JSONSCHEMA through http://127.0.0.1:18081"
    ), r.stdout


def test_serve_hands_its_registry_to_the_gateway_unless_the_file_names_one(tmp_path: Path) -> None:
    from riverbed.cli.embedded import GatewaySettings, RegistrySettings, gateway_child

    plain, named = tmp_path / "plain.toml", tmp_path / "named.toml"
    plain.write_text("[rest]\nenabled = true\n")
    named.write_text(
        '[cluster]\nschema.registry.url = "http://10.0.0.5:8081"\n[rest]\nenabled = true\n'
    )
    registry = RegistrySettings(enabled=True, listen="127.0.0.1:18081")
    child = gateway_child(GatewaySettings(str(plain)), "127.0.0.1:9092", registry)
    assert child is not None and child.argv[-2:] == ["--registry-url", "http://127.0.0.1:18081"]
    child = gateway_child(GatewaySettings(str(named)), "127.0.0.1:9092", registry)
    assert child is not None and "--registry-url" not in child.argv
    child = gateway_child(GatewaySettings(str(plain)), "127.0.0.1:9092", None)
    assert child is not None and "--registry-url" not in child.argv


def test_run_serves_and_stops_on_sigterm_with_open_streams(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(TOML.format(port=port))
    with EmbeddedBroker(tmp_path / "data", **FIXTURE_DEFAULTS) as broker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "gateway", "run", str(cfg), "-b", broker.bootstrap],
            env={"GH_SECRET": "s3cret", "PATH": "/usr/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(url + "/health").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, timeout=30, what="the gateway")
            stream = SseReader(url + "/push/gh")
            body = b'{"zen":"Keep it logically awesome."}'
            r = httpx.post(
                url + "/hooks/github",
                content=body,
                headers={
                    "X-Hub-Signature-256": sign_github(body, "s3cret"),
                    "X-GitHub-Delivery": "d1",
                },
            )
            assert r.status_code == 202
            assert read_topic(broker.bootstrap, "gh", 1)[0].value() == body
            assert stream.wait(1)[0]["value"] == {"zen": "Keep it logically awesome."}
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) in (
                0,
                -signal.SIGTERM,
            )  # uvicorn re-raises the signal once shut down
            assert time.monotonic() - started < 5  # the open stream did not hold the shutdown
            stream.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out = proc.stdout.read() if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
        assert "s3cret" not in out
        assert "graceful shutdown exceeded" not in out and "Traceback" not in out, out


def test_serve_runs_the_gateway_beside_the_broker(tmp_path: Path) -> None:
    """`riverbed serve --gateway gateway.toml` starts the gateway as a child against the broker's
    PLAINTEXT listener, and stops it with the broker."""
    import os

    from riverbed.testing import BrokerProcess

    port = free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(TOML.format(port=port))
    os.environ["GH_SECRET"] = "s3cret"  # inherited by the broker and its child
    try:
        proc = BrokerProcess(tmp_path / "data", extra=["--gateway", str(cfg)]).start()
    finally:
        del os.environ["GH_SECRET"]
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, what="the gateway beside the broker")
        body = b'{"zen":"Design for failure."}'
        r = httpx.post(
            url + "/hooks/github",
            content=body,
            headers={"X-Hub-Signature-256": sign_github(body, "s3cret"), "X-GitHub-Delivery": "d9"},
        )
        assert r.status_code == 202
        assert read_topic(proc.bootstrap, "gh", 1)[0].value() == body
    finally:
        assert proc.terminate() == 0
    assert "edge gateway from" in proc.log_path.read_text()
    wait_for(lambda: not up(), timeout=15, what="the gateway to stop with the broker")
