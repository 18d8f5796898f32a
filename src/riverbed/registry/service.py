"""The registry as a service: `_schemas` replayed through a Kafka client, the REST API over
HTTP. `riverbed registry --bootstrap HOST:PORT` runs it standalone against any
Kafka-compatible cluster."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from riverbed.web import HttpServer
from riverbed.web.serve import run_loop

from .api import RegistryApi
from .log import SchemaLog

log = logging.getLogger("riverbed.registry")


@dataclass
class RegistryConfig:
    bootstrap: str = "127.0.0.1:9092"
    listen: str = "127.0.0.1:8081"  # Confluent's port
    topic: str = "_schemas"
    client: dict[str, Any] = field(default_factory=dict)  # security.protocol, sasl.*, ssl.*, ...
    max_body_bytes: int = 8 * 1024 * 1024
    timeout_s: float = 30.0

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class RegistryService:
    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.store = SchemaLog({"bootstrap.servers": config.bootstrap, **config.client}, config.topic, config.timeout_s)
        host, port = config.host_port()
        self.http = HttpServer(RegistryApi(self.store, config.max_body_bytes).app(), host, port)

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> RegistryService:
        """Replay `_schemas`, then serve HTTP in a background thread."""
        self.store.start()
        self.http.start_in_thread()
        log.info("schema registry listening on %s", self.url)
        return self

    def stop(self) -> None:
        self.http.stop()
        self.store.stop()

    def __enter__(self) -> RegistryService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(config: RegistryConfig) -> int:
    """Run in the foreground until SIGINT/SIGTERM."""
    service = RegistryService(config)
    service.store.start()
    # what start-up built (modules, the replayed state) lives as long as the process: moved out
    # of the cyclic collector's generations, so that its full collections stay short
    gc.collect()
    gc.freeze()
    log.warning("schema registry listening on %s (cluster %s, topic %s)", service.url, config.bootstrap, config.topic)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(service.http.server, "should_exit", True))
        await service.http.serve()

    try:
        run_loop(main())
    finally:
        service.store.stop()
    return 0
