"""Where `riverbed serve` reads its embedded console's settings: the [console] table, then
RIVERBED_CONSOLE / RIVERBED_CONSOLE_LISTEN, then --console-listen / --no-console."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.cli.embedded import ConsoleSettings, RegistrySettings, console_child
from riverbed.cli.main import _service_settings, build_parser


def settings(*argv: str) -> ConsoleSettings:
    return _service_settings(build_parser().parse_args(["serve", *argv]), ConsoleSettings(), "console")


def test_default_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_CONSOLE", raising=False)
    monkeypatch.delenv("RIVERBED_CONSOLE_LISTEN", raising=False)
    s = settings()
    assert (s.enabled, s.listen) == (True, "127.0.0.1:8080")
    cfg = tmp_path / "riverbed.toml"
    cfg.write_text('[console]\nlisten = "0.0.0.0:9080"\n')
    assert settings("--config", str(cfg)).listen == "0.0.0.0:9080"
    monkeypatch.setenv("RIVERBED_CONSOLE_LISTEN", "127.0.0.1:9081")
    assert settings("--config", str(cfg)).listen == "127.0.0.1:9081"
    assert settings("--console-listen", "127.0.0.1:9082").listen == "127.0.0.1:9082"
    monkeypatch.setenv("RIVERBED_CONSOLE", "off")
    assert settings().enabled is False
    monkeypatch.delenv("RIVERBED_CONSOLE")
    assert settings("--no-console").enabled is False


def test_child_command() -> None:
    child = console_child(ConsoleSettings(), "127.0.0.1:9092", RegistrySettings())
    assert child is not None
    assert child.argv == ["console", "--bootstrap", "127.0.0.1:9092", "--listen", "127.0.0.1:8080", "--registry-url", "http://127.0.0.1:8081"]
    child = console_child(ConsoleSettings(), "127.0.0.1:9092", RegistrySettings(enabled=False))
    assert child is not None and "--registry-url" not in child.argv
    assert console_child(ConsoleSettings(enabled=False), "127.0.0.1:9092", RegistrySettings()) is None
    assert console_child(ConsoleSettings(), None, RegistrySettings()) is None  # no PLAINTEXT listener
