"""The embedded schema registry's settings: [registry] table, then RIVERBED_REGISTRY* env,
then flags (the same rules as the metrics endpoint's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.cli.main import _registry_settings, build_parser


def settings(*argv: str):  # type: ignore[no-untyped-def]
    return _registry_settings(build_parser().parse_args(["serve", *argv]))


def test_default_on_at_confluents_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_REGISTRY", raising=False)
    monkeypatch.delenv("RIVERBED_REGISTRY_LISTEN", raising=False)
    s = settings()
    assert (s.enabled, s.listen) == (True, "127.0.0.1:8081")


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "riverbed.toml"
    cfg.write_text('[registry]\nlisten = "127.0.0.1:1111"\nenabled = true\n')
    monkeypatch.delenv("RIVERBED_REGISTRY", raising=False)
    monkeypatch.delenv("RIVERBED_REGISTRY_LISTEN", raising=False)
    assert settings("--config", str(cfg)).listen == "127.0.0.1:1111"
    monkeypatch.setenv("RIVERBED_REGISTRY_LISTEN", "127.0.0.1:2222")
    assert settings("--config", str(cfg)).listen == "127.0.0.1:2222"
    assert settings("--config", str(cfg), "--registry-listen", "127.0.0.1:3333").listen == "127.0.0.1:3333"
    monkeypatch.setenv("RIVERBED_REGISTRY", "false")
    assert settings("--config", str(cfg)).enabled is False
    monkeypatch.delenv("RIVERBED_REGISTRY")
    assert settings("--no-registry").enabled is False
