"""RiverbedApp: start/stop a Broker behind a KafkaServer on the running event loop.
BrokerThread: the same on a private loop in a background thread (for synchronous callers
such as test suites)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from riverbed.broker import Broker, BrokerConfig, ListenerConfig, ListenerSecurity
from riverbed.security.dn import dn_from_certificate
from riverbed.security.principal import map_principal, parse_rules
from riverbed.server import KafkaServer, ServerConfig
from riverbed.server.tls import (
    CertificateIdentity,
    ReloadableContext,
    certificate_identity,
    check_compatible,
    server_context,
)
from riverbed.storage.cleaner_manager import CleanerConfig
from riverbed.storage.manager import LogManager
from riverbed.storage.remote import LocalDirStore, ObjectStore, RemoteLogManagerConfig, S3Store

log = logging.getLogger("riverbed")
T = TypeVar("T")


@dataclass(slots=True)
class StartupInfo:
    host: str
    port: int
    seconds: float


def remote_store_from(config: BrokerConfig) -> ObjectStore | None:
    """The object store of tiered storage (None when none is configured). Building it
    never contacts the store: an unreachable one only delays tiering."""
    if config.remote_storage_path:
        return LocalDirStore(Path(config.remote_storage_path))
    if config.remote_s3_bucket:
        return S3Store(
            config.remote_s3_bucket,
            prefix=config.remote_s3_prefix,
            endpoint_url=config.remote_s3_endpoint,
            region=config.remote_s3_region,
            access_key=config.remote_s3_access_key,  # None: boto3's usual AWS_* / profile chain
            secret_key=config.remote_s3_secret_key,
            connect_timeout=2.0,
            read_timeout=10.0,
            max_attempts=2,
        )
    return None


class RiverbedApp:
    def __init__(self, config: BrokerConfig, *, shutdown_timeout: float = 10.0) -> None:
        self.config = config
        cleaner = CleanerConfig(
            enabled=config.cleaner_enable,
            backoff_ms=config.cleaner_backoff_ms,
            dedupe_buffer_bytes=config.cleaner_dedupe_buffer_size,
            io_max_bytes_per_second=config.cleaner_io_max_bytes_per_second,
        )
        remote_store = remote_store_from(config)
        remote_config = RemoteLogManagerConfig(
            interval_s=config.remote_task_interval_ms / 1000,
            backoff_initial_s=config.remote_retry_backoff_ms / 1000,
            backoff_max_s=max(config.remote_retry_backoff_max_ms, config.remote_retry_backoff_ms) / 1000,
        )
        self.broker = Broker(
            config,
            lambda on_durable: LogManager(
                config.data_dir,
                on_durable=on_durable,
                syncfs=config.flush_syncfs,
                max_open_segment_files=config.max_open_segment_files,
                cleaner=cleaner,
                remote_store=remote_store,
                remote_config=remote_config,
                remote_cache_bytes=config.remote_reader_cache_bytes,
            ),
        )
        self.servers = [self._server_for(listener, shutdown_timeout) for listener in config.effective_listeners()]
        self.server = self.servers[0]  # the first listener's (what bootstrap gives)
        self.started = False

    def _server_for(self, listener: ListenerConfig, shutdown_timeout: float) -> KafkaServer:
        """One KafkaServer per listener; TLS listeners get their context here (their own
        ``listener.name.<name>.ssl.*`` settings over the broker-wide ones), and SSL listeners
        with client authentication the principal mapping (mTLS)."""
        config = self.config
        sec = config.listener_security(listener)
        if listener.protocol == "SASL_PLAINTEXT" and "PLAIN" in sec.sasl_mechanisms:
            log.warning("listener %s: SASL PLAIN without TLS sends passwords in clear; use SASL_SSL or disable PLAIN (sasl.enabled.mechanisms)", listener.name)
        ssl_context = None
        principal_from_certificate = None
        if listener.tls:
            tls = ReloadableContext(self._tls_context(sec))
            ssl_context = tls.front
            served = [certificate_identity(sec.certificate or "")]

            def reload(new: ListenerSecurity, validate_only: bool, tls: ReloadableContext = tls, served: list[CertificateIdentity] = served) -> None:
                # TlsConfigError (a ValueError) when the files do not load or the certificate
                # changes its subject / SANs without ssl.allow.dn.changes / ssl.allow.san.changes
                context = self._tls_context(new)
                identity = certificate_identity(new.certificate or "")
                if self.started:  # at start-up the persisted dynamic settings simply apply
                    check_compatible(served[0], identity, allow_dn_changes=new.allow_dn_changes, allow_san_changes=new.allow_san_changes)
                if not validate_only:
                    tls.replace(context)
                    served[0] = identity

            self.broker.dynamic.tls_reloaders[listener.name] = reload
            # a SASL_SSL client is who SASL says, even when it shows a certificate
            if sec.client_auth != "none" and listener.protocol == "SSL":
                rules = parse_rules(sec.principal_mapping_rules)

                def principal_from_certificate(der: bytes) -> str:
                    return "User:" + map_principal(rules, dn_from_certificate(der))

        return KafkaServer(
            self.broker,
            ServerConfig(
                host=listener.host,
                port=listener.port,
                max_request_size=config.max_request_size,
                shutdown_timeout=shutdown_timeout,
                listener_name=listener.name,
                ssl_context=ssl_context,
                principal_from_certificate=principal_from_certificate,
                unauthenticated_max_frame=512 * 1024 if listener.protocol.startswith("SASL") else None,
                authentication_timeout=30.0 if listener.protocol.startswith("SASL") else None,
                idle_timeout=config.connections_max_idle_ms / 1000 if config.connections_max_idle_ms >= 0 else None,
            ),
        )

    @staticmethod
    def _tls_context(sec: ListenerSecurity) -> ssl.SSLContext:
        return server_context(sec.certificate, sec.key, key_password=sec.key_password, ca=sec.ca, client_auth=sec.client_auth)

    async def start(self) -> StartupInfo:
        t0 = time.perf_counter()
        await self.broker.start()
        try:
            for server in self.servers:
                await server.start()
                self.broker.bound_ports[server.config.listener_name] = server.port
        except BaseException:
            for server in self.servers:
                if server._server is not None:
                    await server.stop()
            await self.broker.stop()
            raise
        self.broker.bound_port = self.server.port
        self.started = True
        host, port = self.broker.advertised()
        info = StartupInfo(host, port, time.perf_counter() - t0)
        for server in self.servers:
            name = server.config.listener_name
            listener = self.broker.listeners[name]
            log.info("riverbed listener %s (%s) on %s:%d, advertised as %s:%d", name, listener.protocol, server.config.host, server.port, *self.broker.advertised(name))
        log.info("riverbed listening on %s:%d (data in %s), ready in %.0f ms", self.server.config.host, self.server.port, self.config.data_dir, info.seconds * 1000)
        return info

    def bootstrap_for(self, listener: str) -> str:
        """The advertised address of one listener (by name)."""
        host, port = self.broker.advertised(listener)
        return f"{host}:{port}"

    @property
    def bootstrap(self) -> str:
        host, port = self.broker.advertised()
        return f"{host}:{port}"

    async def stop(self) -> None:
        """Stop accepting, answer in-flight requests, then flush and fsync every log."""
        if not self.started:
            return
        self.started = False
        await asyncio.gather(*(server.stop() for server in self.servers))
        await self.broker.stop()


class BrokerThread:
    """Run a RiverbedApp on its own event loop in a daemon thread."""

    def __init__(self, config: BrokerConfig) -> None:
        self.app = RiverbedApp(config, shutdown_timeout=2.0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="riverbed-broker", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.app.start()
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.app.stop()

    def start(self, timeout: float = 10.0) -> BrokerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("riverbed did not start in time")
        if self._error is not None:
            raise self._error
        return self

    @property
    def bootstrap(self) -> str:
        return self.app.bootstrap

    def bootstrap_for(self, listener: str) -> str:
        return self.app.bootstrap_for(listener)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the broker's loop and return its result (for tests)."""

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

