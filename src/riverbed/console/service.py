"""The console as a service: `riverbed console --bootstrap HOST:PORT` against any
Kafka-compatible cluster, and the child process `riverbed serve` starts beside the broker."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from riverbed.web import HttpServer

from .app import ConsoleConfig, create_console_app

log = logging.getLogger("riverbed.console")


def host_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class ConsoleService:
    """The console on HOST:PORT in a background thread (tests, examples, benchmarks)."""

    def __init__(self, config: ConsoleConfig, listen: str = "127.0.0.1:0") -> None:
        self.console, app = create_console_app(config)
        host, port = host_port(listen)
        self.http = HttpServer(app, host, port)

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> ConsoleService:
        self.http.start_in_thread()
        return self

    def stop(self) -> None:
        self.http.stop()

    def __enter__(self) -> ConsoleService:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run(config: ConsoleConfig, listen: str) -> int:
    """Serve in the foreground until SIGINT/SIGTERM."""
    try:
        service = ConsoleService(config, listen)
    except OSError as exc:
        log.error("cannot start the console on %s: %s", listen, exc)
        return 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(service.http.server, "should_exit", True))
        await service.http.serve()

    log.warning("console on %s (cluster %s, registry %s)", service.url, config.cluster.bootstrap, config.cluster.registry_url or "none")
    asyncio.run(main())
    return 0
