"""`riverbed serve --with-sql`: the SQL server beside the broker is off by default; on with
`[sql] enabled = true`, RIVERBED_SQL=true or --with-sql; its address from the file, the env,
then --sql-listen. The config file's service tables are accepted by the broker's loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.cli.config import load_config
from riverbed.cli.embedded import RegistrySettings, SqlSettings, sql_child
from riverbed.cli.main import _sql_settings, build_parser


def settings(*argv: str) -> SqlSettings:
    return _sql_settings(build_parser(only="serve").parse_args(["serve", *argv]))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_SQL", raising=False)
    monkeypatch.delenv("RIVERBED_SQL_LISTEN", raising=False)


def test_off_by_default_and_on_with_the_flag() -> None:
    assert (settings().enabled, settings().listen) == (False, "127.0.0.1:8088")
    assert settings("--with-sql").enabled is True
    assert settings("--with-sql", "--sql-listen", "127.0.0.1:9999").listen == "127.0.0.1:9999"


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "riverbed.toml"
    cfg.write_text(
        'data_dir = "x"\n[sql]\nenabled = true\nlisten = "127.0.0.1:1111"\n[console]\nenabled = false\n'
    )
    load_config(cfg)  # the service tables are not broker settings, and not errors
    s = settings("--config", str(cfg))
    assert (s.enabled, s.listen) == (True, "127.0.0.1:1111")
    monkeypatch.setenv("RIVERBED_SQL_LISTEN", "127.0.0.1:2222")
    assert settings("--config", str(cfg)).listen == "127.0.0.1:2222"
    assert (
        settings("--config", str(cfg), "--sql-listen", "127.0.0.1:3333").listen == "127.0.0.1:3333"
    )
    monkeypatch.setenv("RIVERBED_SQL", "true")
    assert settings().enabled is True


def test_child_command_line() -> None:
    child = sql_child(
        SqlSettings(True, "127.0.0.1:8088"),
        "127.0.0.1:9092",
        RegistrySettings(True, "127.0.0.1:8081"),
        "/data",
    )
    assert child is not None and child.argv == [
        "sql",
        "serve",
        "--bootstrap",
        "127.0.0.1:9092",
        "--listen",
        "127.0.0.1:8088",
        "--state-dir",
        "/data/sql-state",
        "--registry-url",
        "http://127.0.0.1:8081",
    ]
    assert (
        sql_child(SqlSettings(True), None, RegistrySettings(), "/data") is None
    )  # no PLAINTEXT listener
    assert sql_child(SqlSettings(False), "127.0.0.1:9092", RegistrySettings(), "/data") is None
