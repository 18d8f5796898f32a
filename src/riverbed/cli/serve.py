"""``riverbed serve``: run the broker until SIGINT/SIGTERM; a second signal forces exit."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

from riverbed.app import RiverbedApp
from riverbed.app.metrics_http import MetricsEndpoint, MetricsSettings
from riverbed.broker import BrokerConfig
from riverbed.security.credentials import CorruptCredentialStoreError
from riverbed.server.tls import TlsConfigError

from .embedded import (
    ConsoleSettings,
    GatewaySettings,
    RegistrySettings,
    SqlSettings,
    console_child,
    gateway_child,
    registry_child,
    sql_child,
)

log = logging.getLogger("riverbed")


def run(config: BrokerConfig, registry: RegistrySettings | None = None, metrics: MetricsSettings | None = None, console: ConsoleSettings | None = None, gateway: GatewaySettings | None = None, sql: SqlSettings | None = None) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - optional
        pass
    return asyncio.run(_serve(config, registry or RegistrySettings(enabled=False), metrics or MetricsSettings(enabled=False), console or ConsoleSettings(enabled=False), gateway or GatewaySettings(), sql or SqlSettings()))


async def _serve(config: BrokerConfig, registry: RegistrySettings, metrics_settings: MetricsSettings, console: ConsoleSettings, gateway: GatewaySettings, sql: SqlSettings) -> int:
    # Signals are handled from the first moment: a SIGTERM while the broker is still starting
    # (or starting its side services) shuts it down cleanly once it can, instead of killing it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("received %s: shutting down (flushing logs); send again to force", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("forced exit")
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        app = RiverbedApp(config)
        await app.start()
    except (OSError, CorruptCredentialStoreError, TlsConfigError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    # What start-up built (modules, topics, logs, their indexes) lives as long as the process:
    # keep it out of the cyclic collector's scans, and collect the young generation less often
    # (requests allocate many short-lived containers that reference counting frees anyway).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    metrics = MetricsEndpoint(app, metrics_settings) if metrics_settings.enabled else None
    if metrics is not None:
        try:
            await metrics.start()
        except (OSError, ValueError) as exc:
            log.error("cannot start: metrics endpoint on %s: %s (--metrics-listen HOST:PORT, or --no-metrics)", metrics_settings.listen, exc)
            await app.stop()
            return 1
    print(f"riverbed ready on {app.bootstrap} (data: {config.data_dir})", file=sys.stderr, flush=True)
    plaintext = next((app.bootstrap_for(listener.name) for listener in config.effective_listeners() if listener.protocol == "PLAINTEXT"), None)
    child = registry_child(registry, plaintext) if not stop.is_set() else None
    if child is not None:
        child.start()
        print(f"schema registry on http://{registry.listen}", file=sys.stderr, flush=True)
    console_proc = console_child(console, plaintext, registry if child is not None else RegistrySettings(enabled=False)) if not stop.is_set() else None
    if console_proc is not None:
        console_proc.start()
        print(f"web console on http://{console.listen}", file=sys.stderr, flush=True)
    gateway_proc = gateway_child(gateway, plaintext, registry if child is not None else None) if not stop.is_set() else None
    if gateway_proc is not None:
        gateway_proc.start()
        print(f"edge gateway from {gateway.config}", file=sys.stderr, flush=True)
    sql_proc = sql_child(sql, plaintext, registry if child is not None else RegistrySettings(enabled=False), str(config.data_dir)) if not stop.is_set() else None
    if sql_proc is not None:
        sql_proc.start()
        print(f"SQL server on http://{sql.listen}", file=sys.stderr, flush=True)
    if metrics is not None:
        print(f"metrics on http://{metrics_settings.listen}/metrics", file=sys.stderr, flush=True)
    await stop.wait()
    if sql_proc is not None:
        await loop.run_in_executor(None, sql_proc.stop)
    if gateway_proc is not None:
        await loop.run_in_executor(None, gateway_proc.stop)
    if console_proc is not None:
        await loop.run_in_executor(None, console_proc.stop)
    if child is not None:
        await loop.run_in_executor(None, child.stop)
    if metrics is not None:
        await metrics.stop()
    await app.stop()
    log.info("riverbed stopped cleanly")
    return 0
