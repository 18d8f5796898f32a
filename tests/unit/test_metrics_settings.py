"""Where the settings of the metrics endpoint come from: the [metrics] table of the config
file, then RIVERBED_METRICS / RIVERBED_METRICS_LISTEN, then flags (later wins), as for the
embedded schema registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.cli.main import _metrics_settings, build_parser


def settings(*argv: str):  # type: ignore[no-untyped-def]
    return _metrics_settings(build_parser().parse_args(["serve", *argv]))


def test_default_is_on_at_9644(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_METRICS", raising=False)
    monkeypatch.delenv("RIVERBED_METRICS_LISTEN", raising=False)
    s = settings()
    assert (s.enabled, s.listen, s.address) == (True, "127.0.0.1:9644", ("127.0.0.1", 9644))


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_METRICS", raising=False)
    monkeypatch.delenv("RIVERBED_METRICS_LISTEN", raising=False)
    cfg = tmp_path / "riverbed.toml"
    cfg.write_text('[metrics]\nlisten = "0.0.0.0:9100"\n')
    assert settings("--config", str(cfg)).listen == "0.0.0.0:9100"
    monkeypatch.setenv("RIVERBED_METRICS_LISTEN", "127.0.0.1:9200")
    assert settings("--config", str(cfg)).listen == "127.0.0.1:9200"
    assert settings("--config", str(cfg), "--metrics-listen", "127.0.0.1:9300").listen == "127.0.0.1:9300"
    cfg.write_text("[metrics]\nenabled = false\n")
    assert settings("--config", str(cfg)).enabled is False
    monkeypatch.setenv("RIVERBED_METRICS", "false")
    assert settings().enabled is False
    monkeypatch.delenv("RIVERBED_METRICS")
    assert settings("--no-metrics").enabled is False


def test_bad_listen_address_is_refused() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        _ = settings("--metrics-listen", "9644").address


def test_ipv6_listen_address_is_served() -> None:
    import http.client
    import socket
    import threading

    from prometheus_client import CollectorRegistry

    from riverbed.app.metrics_http import MetricsSettings, _Server

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    server = _Server(MetricsSettings(listen="[::1]:0").address, CollectorRegistry())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path, status in (("/metrics", 200), ("/nope", 404)):
            conn = http.client.HTTPConnection("::1", server.server_address[1], timeout=30)
            conn.request("GET", path)
            assert conn.getresponse().status == status
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
