"""Services `riverbed serve` starts beside the broker: each the same command a user runs
standalone (`riverbed registry --bootstrap ...`), as a child process so that it never takes the
broker's event loop or GIL. A child gets SIGTERM when the broker process dies, even by kill -9
(Linux PR_SET_PDEATHSIG), so no orphan keeps its port."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
from dataclasses import dataclass

log = logging.getLogger("riverbed")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class RegistrySettings:
    """The embedded schema registry: on by default at Confluent's port."""

    enabled: bool = True
    listen: str = "127.0.0.1:8081"


@dataclass
class ConsoleSettings:
    """The embedded web console (docs/console.md): on by default, localhost only."""

    enabled: bool = True
    listen: str = "127.0.0.1:8080"


@dataclass
class GatewaySettings:
    """The edge gateway (docs/gateway.md) beside the broker: off unless given a gateway.toml."""

    config: str | None = None


@dataclass
class SqlSettings:
    """The SQL server (docs/sql.md) beside the broker: off unless asked for (`--with-sql`, or
    `[sql] enabled = true`), at ksqlDB's port."""

    enabled: bool = False
    listen: str = "127.0.0.1:8088"


class ChildService:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "riverbed", *self.argv], preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log.info("started %s (pid %d): riverbed %s", self.name, self.proc.pid, " ".join(self.argv))

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killed", self.name, timeout)
            self.proc.kill()
            self.proc.wait(5)
            return
        log.info("%s stopped (exit code %d)", self.name, code)


def registry_child(settings: RegistrySettings, plaintext_bootstrap: str | None) -> ChildService | None:
    if not settings.enabled:
        return None
    if plaintext_bootstrap is None:
        log.warning("the embedded schema registry needs a PLAINTEXT listener to reach the broker; not started (run `riverbed registry --bootstrap ... --command-config ...` for secured listeners)")
        return None
    return ChildService("schema registry", ["registry", "--bootstrap", plaintext_bootstrap, "--listen", settings.listen])


def console_child(settings: ConsoleSettings, plaintext_bootstrap: str | None, registry: RegistrySettings) -> ChildService | None:
    if not settings.enabled:
        return None
    if plaintext_bootstrap is None:
        log.warning("the embedded console needs a PLAINTEXT listener to reach the broker; not started (run `riverbed console --bootstrap ... --client-config ...` for secured listeners)")
        return None
    argv = ["console", "--bootstrap", plaintext_bootstrap, "--listen", settings.listen]
    if registry.enabled:
        argv += ["--registry-url", f"http://{registry.listen}"]
    return ChildService("web console", argv)


def gateway_child(settings: GatewaySettings, plaintext_bootstrap: str | None, registry: RegistrySettings | None = None) -> ChildService | None:
    """The gateway against the broker; its REST proxy uses the embedded registry (`registry`,
    when running) unless gateway.toml's [cluster] or RIVERBED_REGISTRY_URL names one."""
    if settings.config is None:
        return None
    if plaintext_bootstrap is None:
        log.warning("the embedded gateway needs a PLAINTEXT listener to reach the broker; not started (run `riverbed gateway run` with [cluster] settings for secured listeners)")
        return None
    argv = ["gateway", "run", settings.config, "--bootstrap", plaintext_bootstrap]
    if registry is not None and registry.enabled and not _names_registry(settings.config):
        argv += ["--registry-url", f"http://{registry.listen}"]
    return ChildService("edge gateway", argv)


def _names_registry(path: str) -> bool:
    import tomllib
    from pathlib import Path

    from riverbed.client import ClusterSettings

    try:
        table = tomllib.loads(Path(path).read_text()).get("cluster", {})
        return ClusterSettings.from_mapping(table).registry_url is not None
    except (OSError, ValueError):  # the child reports a bad file itself
        return False


def sql_child(settings: SqlSettings, plaintext_bootstrap: str | None, registry: RegistrySettings, data_dir: str) -> ChildService | None:
    """`riverbed sql serve` against the broker; its persistent queries keep their state stores
    under the broker's data directory (`<data dir>/sql-state`)."""
    if not settings.enabled:
        return None
    if plaintext_bootstrap is None:
        log.warning("the embedded SQL server needs a PLAINTEXT listener to reach the broker; not started (run `riverbed sql serve --bootstrap ... --client-config ...` for secured listeners)")
        return None
    argv = ["sql", "serve", "--bootstrap", plaintext_bootstrap, "--listen", settings.listen, "--state-dir", f"{data_dir}/sql-state"]
    if registry.enabled:
        argv += ["--registry-url", f"http://{registry.listen}"]
    return ChildService("SQL server", argv)
