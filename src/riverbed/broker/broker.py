"""The Broker: implements the server's Handler interface.

It parses the request header, checks the API version against ``versions.SUPPORTED``, decodes
the body with the generated classes, calls the API's handler (``apis/``), and frames the
response. Handlers return a response message, None (no response: acks=0), or an awaitable
of either (produce waiting for fsync, fetch long polls).

It also owns the partition registry (topics in ``metadata`` joined with logs in ``storage``)
and the two kinds of waiters that the storage flusher wakes: acks=all produce responses
waiting for durability, and fetches waiting for data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from riverbed.coordinator.fetch_sessions import FetchSessionCache
from riverbed.coordinator.group_types import GroupConfig
from riverbed.coordinator.txn_types import TxnConfig
from riverbed.metadata.configs import (
    BROKER_TO_TOPIC,
    check_tiering,
    cleanup_policy,
    effective_topic_configs,
    validate_topic_configs,
)
from riverbed.metadata.topics import Topic, TopicStore
from riverbed.protocol.errors import DecodeError, ErrorCode, KafkaError
from riverbed.protocol.extensions import EXTENSIONS
from riverbed.protocol.framing import (
    API_VERSIONS_KEY,
    frame_response,
    parse_request_header,
    peek_correlation,
)
from riverbed.protocol.messages import request_class
from riverbed.protocol.messages.api_versions import ApiVersionsResponse
from riverbed.protocol.primitives import Buffer, Message, Reader, Writer
from riverbed.security.acl import SUPPORTED_OPERATIONS, AclOperation, Authorizer, ResourceType
from riverbed.security.acl_store import AclStore
from riverbed.security.api_acls import authorized_operations, operations_bitfield
from riverbed.security.credentials import CredentialStore, LoginCredentials
from riverbed.security.sasl import SaslServerFactory, SaslSession, SaslState
from riverbed.security.throttle import FailedAuthThrottle, ThrottleConfig
from riverbed.server.handler import CloseConnection, ConnectionInfo, Reply, ReplyThenClose
from riverbed.storage.api import LogConfig, LogStore, PartitionLog
from riverbed.storage.files import make_dirs_durably

from .config import BrokerConfig, ListenerConfig
from .dynamic_configs import DynamicConfigs
from .groups import GroupService
from .schema_ids import SCHEMAS_TOPIC, SchemaIndex
from .share import ShareService
from .stats import BrokerStats
from .txns import TxnService
from .versions import SUPPORTED

ANONYMOUS = "User:ANONYMOUS"

log = logging.getLogger("riverbed.broker")
T = TypeVar("T")

# Builds the log store; its argument is the callback the store's flusher thread calls after
# each fsync cycle. The composition root (riverbed.app) picks the engine.
StoreFactory = Callable[[Callable[[], None]], LogStore]

ApiHandler = Callable[["Broker", ConnectionInfo, int, Any], "Message | Awaitable[Message | None] | None"]


class Waiter:
    """A parked request: done when ``ready()`` holds or the future is resolved elsewhere."""

    __slots__ = ("future", "ready")

    def __init__(self, future: asyncio.Future[None], ready: Callable[[], bool]) -> None:
        self.future = future
        self.ready = ready


class Broker:
    def __init__(self, config: BrokerConfig, store_factory: StoreFactory) -> None:
        from .apis import API_HANDLERS
        from .apis.fetch import decode_request

        self.config = config
        self.handlers: dict[int, ApiHandler] = API_HANDLERS
        self._decode_fetch = decode_request
        self.topics = TopicStore(config.data_dir)
        self.logs = store_factory(self._on_durable_threadsafe)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.bound_port = config.port  # of the first listener
        self.listeners: dict[str, ListenerConfig] = {lst.name: lst for lst in config.effective_listeners()}
        self._first_listener = next(iter(self.listeners.values()))
        self.bound_ports: dict[str, int] = {}  # listener name -> bound port (set by the app)
        self._sasl_listeners = frozenset(n for n, lst in self.listeners.items() if lst.sasl)
        # users and SASL (docs/security.md): opened in start()
        self.credentials: CredentialStore | None = None
        self.sasl_factories: dict[str, SaslServerFactory] = {}  # per SASL listener
        # failed logins: how long each failure's answer is held back (docs/security.md)
        self.auth_throttle = FailedAuthThrottle(
            ThrottleConfig(failure_delay=config.connection_failed_authentication_delay_ms / 1000)
        )
        self.stats = BrokerStats()  # for the metrics endpoint (riverbed.app.metrics)
        self._waiters: set[Waiter] = set()
        self._wake_scheduled = False
        self.changes = 0  # notify() calls so far: a long poll sees whether anything happened
        self._retention_task: asyncio.Task[None] | None = None
        self._remote_pool: ThreadPoolExecutor | None = None
        self.log_defaults = dict(config.log_defaults)  # in force: static, then dynamic
        self.dynamic = DynamicConfigs(self)  # dynamic broker configs (AlterConfigs)
        self.acls: AclStore | None = None
        self.fetch_sessions = FetchSessionCache(max_slots=config.fetch_session_cache_slots)  # KIP-227
        self.authorizer: Authorizer | None = None
        self.schema_ids = SchemaIndex(lambda: self.partition(SCHEMAS_TOPIC, 0))  # produce-time schema checks
        self.groups = GroupService(self, GroupConfig(initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms))
        self.shares = ShareService(self)  # share groups (KIP-932, docs/share-groups.md)
        self.txns = TxnService(
            self,
            TxnConfig(
                transaction_max_timeout_ms=config.transaction_max_timeout_ms,
                transactional_id_expiration_ms=config.transactional_id_expiration_ms,
                abort_timed_out_interval_ms=config.transaction_abort_interval_ms,
            ),
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        make_dirs_durably(self.config.data_dir, os.fsync)  # a new one survives a crash
        self._open_credentials()  # first: a corrupt credential file stops start-up
        self.dynamic.load()  # dynamic broker configs, before the logs take their defaults
        self.topics.load()
        self.logs.open()
        for topic in self.topics:
            cfg = self.log_config(topic)  # (once per topic: 10,000 partitions start faster)
            for p in range(topic.partitions):
                # (without loading a partition found after a clean shutdown: it loads at its
                # first use, or on the log manager's loader thread)
                if not self.logs.configure(topic.name, p, cfg):
                    self.logs.create(topic.name, p, cfg)
        self._open_security()
        self.groups.start()
        self.txns.start()  # after the groups: markers settle their pending offsets
        self.shares.start()
        self._retention_task = asyncio.create_task(self._retention_loop())
        self.logs.start_cleaner()  # log compaction, on its own thread

    async def stop(self) -> None:
        self.groups.stop()
        self.shares.stop()
        self.txns.stop()
        if self._retention_task is not None:
            self._retention_task.cancel()
        for w in self._waiters:
            if not w.future.done():
                w.future.set_result(None)
        self._waiters.clear()
        await asyncio.get_running_loop().run_in_executor(None, self.logs.stop_cleaner)
        if self._remote_pool is not None:
            self._remote_pool.shutdown(wait=False, cancel_futures=True)
            self._remote_pool = None
        await asyncio.get_running_loop().run_in_executor(None, self.logs.close)

    async def _retention_loop(self) -> None:
        interval = max(self.config.retention_check_interval_ms, 10) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self.run_retention()
            except Exception:  # pragma: no cover - logged, loop continues
                log.exception("retention check failed")

    def run_retention(self) -> None:
        now = self.now_ms()
        self.logs.run_retention(now)
        for plog in self.logs.partitions():
            plog.expire_producers(now, self.dynamic.int_value("producer.id.expiration.ms"))
        self.notify()  # log start offsets may have moved: long polls look again

    # ------------------------------------------------------------------ users and SASL
    def _open_credentials(self) -> None:
        """The SCRAM credential store (``<data dir>/credentials.json``) and the SASL
        mechanisms of each SASL listener. Raises CorruptCredentialStoreError."""
        self.credentials = CredentialStore(self.config.data_dir)
        login = LoginCredentials(self.credentials)
        self.sasl_factories = {
            name: SaslServerFactory(login, self.config.listener_security(self.listeners[name]).sasl_mechanisms)
            for name in self._sasl_listeners
        }

    def sasl_session(self, conn: ConnectionInfo) -> SaslSession | None:
        """The connection's SASL state on a SASL listener (created on its first request)."""
        session = conn.state.get("sasl")
        if session is None and conn.listener in self._sasl_listeners:
            host = conn.peer.rsplit(":", 1)[0].strip("[]")
            session = SaslSession(self.sasl_factories[conn.listener], client_address=host, throttle=self.auth_throttle)
            conn.state["sasl"] = session
        return session

    # ------------------------------------------------------------------ security
    def _open_security(self) -> None:
        """The ACL store and the authorizer (when ``authorizer.class.name`` is set)."""
        if not self.config.authorizer_enabled:
            return
        self.acls = AclStore(self.config.data_dir)
        self.authorizer = Authorizer(self.acls, super_users=self.config.super_users, allow_everyone_if_no_acl_found=self.config.allow_everyone_if_no_acl_found)

    @staticmethod
    def principal(conn: ConnectionInfo) -> str:
        """The authenticated principal of a connection ("User:ANONYMOUS" until SASL or mTLS
        sets ``conn.state["principal"]``)."""
        principal = conn.state.get("principal")
        return principal if isinstance(principal, str) else ANONYMOUS

    @staticmethod
    def client_host(conn: ConnectionInfo) -> str:
        """The client's address as host ACLs see it (an IPv4 client on a dual-stack socket by
        its IPv4 address)."""
        host = conn.peer.rsplit(":", 1)[0].strip("[]")
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return host

    def authorize(self, conn: ConnectionInfo, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        """May this connection's principal do ``operation`` on the resource? Always True
        without an authorizer."""
        if self.authorizer is None:
            return True
        return self.authorizer.authorize(self.principal(conn), self.client_host(conn), operation, resource_type, name)

    def authorized_operations(self, conn: ConnectionInfo, resource_type: ResourceType, name: str) -> int:
        """KIP-430's bit field of the operations this connection's principal may perform on a
        resource; every supported operation without an authorizer, as Kafka answers."""
        if self.authorizer is None:
            return operations_bitfield(SUPPORTED_OPERATIONS.get(resource_type, frozenset()))
        return authorized_operations(self.authorizer, self.principal(conn), self.client_host(conn), resource_type, name)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    def advertised(self, listener: str | None = None) -> tuple[str, int]:
        """The address clients of ``listener`` (a connection's ``conn.listener``) are told to
        use; the first listener's when None or unknown."""
        lst = self.listeners.get(listener, self._first_listener) if listener else self._first_listener
        return lst.advertised(self.bound_ports.get(lst.name, self.bound_port))

    def topic_configs(self, topic: Topic) -> dict[str, str]:
        return {c.name: c.value for c in effective_topic_configs(topic.configs, self.log_defaults)}

    def log_config(self, topic: Topic) -> LogConfig:
        c = self.topic_configs(topic)
        delete, compact = cleanup_policy(c["cleanup.policy"])
        return LogConfig(
            segment_bytes=int(c["segment.bytes"]),
            segment_ms=int(c["segment.ms"]),
            index_interval_bytes=int(c["index.interval.bytes"]),
            retention_ms=int(c["retention.ms"]),
            retention_bytes=int(c["retention.bytes"]),
            flush_messages=int(c["flush.messages"]),
            flush_ms=int(c["flush.ms"]),
            max_message_bytes=int(c["max.message.bytes"]),
            cleanup_delete=delete,
            cleanup_compact=compact,
            min_cleanable_dirty_ratio=float(c["min.cleanable.dirty.ratio"]),
            min_compaction_lag_ms=int(c["min.compaction.lag.ms"]),
            max_compaction_lag_ms=int(c["max.compaction.lag.ms"]),
            delete_retention_ms=int(c["delete.retention.ms"]),
            remote_storage_enable=c["remote.storage.enable"].strip().lower() == "true",
            local_retention_ms=int(c["local.retention.ms"]),
            local_retention_bytes=int(c["local.retention.bytes"]),
        )

    def check_tiering(self, overrides: Mapping[str, str | None], current: Topic | None = None) -> None:
        """Refuse tiering settings this broker cannot honour (INVALID_CONFIG): remote
        storage without an object store, switching it off, local retention above total."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        effective = {c.name: c.value for c in effective_topic_configs(clean, self.log_defaults)}
        old = None if current is None else self.topic_configs(current)
        check_tiering(effective, old, self.config.remote_storage_configured)

    def run_remote(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a blocking read of tiered data (object-store I/O) on the remote-read pool."""
        if self._remote_pool is None:
            self._remote_pool = ThreadPoolExecutor(
                max_workers=self.config.remote_reader_threads, thread_name_prefix="riverbed-remote-read"
            )
        return asyncio.get_running_loop().run_in_executor(self._remote_pool, fn, *args)

    def partition(self, topic: str, index: int) -> PartitionLog | None:
        return self.logs.get(topic, index)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str | None]) -> Topic:
        self.check_tiering(validate_topic_configs(configs))
        topic = self.topics.create(name, partitions, configs)
        cfg = self.log_config(topic)
        try:
            for p in range(partitions):
                self.logs.create(name, p, cfg)
        except KafkaError:
            # (too many open files, disk full): no topic with missing partitions stays behind
            self.logs.delete_topic(name)  # (first: it frees the descriptors)
            self.topics.delete(name)
            raise
        log.info("created topic %s with %d partitions", name, partitions)
        self.groups.metadata_changed()
        return topic

    def delete_topic(self, name: str) -> Topic:
        topic = self.topics.delete(name)
        self.logs.delete_topic(name)
        self.stats.forget_topic(name)
        log.info("deleted topic %s", name)
        self.groups.metadata_changed()
        self.shares.topic_deleted(topic.topic_id)  # its share-partitions' state goes too
        self.notify()  # long polls on it answer its error
        return topic

    def add_partitions(self, name: str, total: int) -> None:
        topic = self.topics.add_partitions(name, total)
        cfg = self.log_config(topic)
        for p in range(total):
            if self.logs.get(name, p) is None:
                self.logs.create(name, p, cfg)
        self.groups.metadata_changed()

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        current = self.topics.get(name)
        if current is not None:
            self.check_tiering(configs, current)
        topic = self.topics.set_configs(name, configs)
        cfg = self.log_config(topic)
        for p in range(topic.partitions):
            plog = self.logs.get(name, p)
            if plog is not None:
                plog.update_config(cfg)

    def set_broker_configs(self, configs: dict[str, str]) -> None:
        self.log_defaults = configs
        for topic in self.topics:
            cfg = self.log_config(topic)
            for p in range(topic.partitions):
                plog = self.logs.get(topic.name, p)
                if plog is not None:
                    plog.update_config(cfg)

    def broker_log_keys(self) -> set[str]:
        return set(BROKER_TO_TOPIC)

    # ------------------------------------------------------------------ waiting
    def wait_until(self, ready: Callable[[], bool]) -> asyncio.Future[None]:
        """A future resolved (with None) once ``ready()`` is true after a data/durability event."""
        assert self.loop is not None
        fut: asyncio.Future[None] = self.loop.create_future()
        if ready():
            fut.set_result(None)
        else:
            waiter = Waiter(fut, ready)
            self._waiters.add(waiter)
            # a waiter whose request timed out or went away leaves at once, even when no
            # append ever wakes the broker again
            fut.add_done_callback(lambda _f: self._waiters.discard(waiter))
        return fut

    def notify(self) -> None:
        """Something changed (append, fsync, truncation): re-check waiters once this tick."""
        self.changes += 1
        if not self._wake_scheduled and self.loop is not None:
            self._wake_scheduled = True
            self.loop.call_soon(self._wake)

    def _on_durable_threadsafe(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self.notify)

    def _wake(self) -> None:
        self._wake_scheduled = False
        for w in list(self._waiters):
            if w.future.done():
                continue
            try:
                ok = w.ready()
            except Exception as exc:  # a partition vanished: let the waiter re-evaluate
                w.future.set_exception(exc)
                continue
            if ok:
                w.future.set_result(None)

    # ------------------------------------------------------------------ Handler
    def connection_closed(self, conn: ConnectionInfo) -> None:
        pass

    def handle(self, conn: ConnectionInfo, frame: bytearray) -> Reply:
        session = self.sasl_session(conn) if self._sasl_listeners else None
        if session is not None and not session.authenticated:
            if session.failed:
                return None  # the failure answer is on its way, then the connection closes
            if session.raw_tokens and session.state in (SaslState.AWAITING_AUTHENTICATE, SaslState.AUTHENTICATING):
                from .apis.sasl import handle_raw_token

                return handle_raw_token(self, conn, session, frame)
        try:
            key, version, corr = peek_correlation(frame)
        except DecodeError as exc:
            raise CloseConnection(str(exc)) from exc
        if session is not None and session.admit(key):
            raise CloseConnection(f"request with API key {key} from {conn.peer} in SASL state {session.state.value}")
        extension = EXTENSIONS.get(key)  # riverbed's own requests, not in ApiVersions
        supported = SUPPORTED.get(key) if extension is None else (extension[0].MIN_VERSION, extension[0].MAX_VERSION)
        handler = self.handlers.get(key)
        if supported is None or handler is None:
            raise CloseConnection(f"unsupported API key {key}")
        if not supported[0] <= version <= supported[1]:
            if key == API_VERSIONS_KEY:
                return self._api_versions_unsupported(corr)
            raise CloseConnection(f"unsupported version {version} of API {key}")
        req_cls = request_class(key) if extension is None else extension[0]
        flexible = version >= req_cls.FLEXIBLE_VERSION
        try:
            header = parse_request_header(frame, flexible)
            request: Message
            if key == 1:  # Fetch: an idle consumer repeats its request: decoded once
                request = self._decode_fetch(conn, frame, header.body_offset, version)
            else:
                request = req_cls.read(Reader(frame, header.body_offset), version)
        except DecodeError as exc:
            raise CloseConnection(f"malformed request (api {key} v{version}) from {conn.peer}: {exc}") from exc
        conn.state["client_id"] = header.client_id
        result = handler(self, conn, version, request)
        flexible_header = flexible and key != API_VERSIONS_KEY
        # a handler sets "close_after_reply" to end the connection after this answer
        close = bool(conn.state.pop("close_after_reply", False))
        if result is None:
            if close:
                raise CloseConnection(f"closing {conn.peer}")
            return None
        if isinstance(result, Message):
            self.stats.answered(key, result, self._topic_name)
            chunks = self._frame(corr, version, result, flexible_header)
            return ReplyThenClose(chunks) if close else chunks
        if isinstance(result, asyncio.Future):
            return self._frame_when_done(corr, version, result, flexible_header, close, conn, key)
        return self._frame_later(corr, version, result, flexible_header, close, conn, key)

    def _topic_name(self, topic_id: Any) -> str | None:
        topic = self.topics.by_id(topic_id)
        return None if topic is None else topic.name

    def _frame_when_done(
        self, corr: int, version: int, pending: asyncio.Future[Message | None], flexible_header: bool, close: bool, conn: ConnectionInfo, key: int
    ) -> asyncio.Future[list[Buffer] | None]:
        """``_frame_later`` for a handler that answers with a future (produce): a callback,
        not a task per request."""
        out: asyncio.Future[list[Buffer] | None] = pending.get_loop().create_future()

        def done(f: asyncio.Future[Message | None]) -> None:
            if out.done():
                return
            if f.cancelled():
                out.cancel()
                return
            try:
                result = f.result()
                closing = close or bool(conn.state.pop("close_after_reply", False))
                if result is None:
                    if closing:
                        raise CloseConnection("closing after the reply")
                    out.set_result(None)
                    return
                self.stats.answered(key, result, self._topic_name)
                chunks = self._frame(corr, version, result, flexible_header)
                out.set_result(ReplyThenClose(chunks) if closing else chunks)
            except Exception as exc:  # the server closes the connection on it
                out.set_exception(exc)

        pending.add_done_callback(done)
        out.add_done_callback(lambda o: pending.cancel() if o.cancelled() else None)
        return out

    async def _frame_later(
        self, corr: int, version: int, pending: Awaitable[Message | None], flexible_header: bool, close: bool = False, conn: ConnectionInfo | None = None, key: int = -1
    ) -> list[Buffer] | None:
        result = await pending
        if result is not None:
            self.stats.answered(key, result, self._topic_name)
        if conn is not None:  # an asynchronous handler (SASL) may decide to close only now
            close = close or bool(conn.state.pop("close_after_reply", False))
        if result is None:
            if close:
                raise CloseConnection("closing after the reply")
            return None
        chunks = self._frame(corr, version, result, flexible_header)
        return ReplyThenClose(chunks) if close else chunks

    @staticmethod
    def _frame(corr: int, version: int, response: Message, flexible_header: bool) -> list[Buffer]:
        w = Writer()
        response.write(w, version)
        return frame_response(corr, w.chunks(), flexible_header=flexible_header)

    @staticmethod
    def _api_versions_unsupported(corr: int) -> list[Buffer]:
        lo, hi = SUPPORTED[API_VERSIONS_KEY]
        resp = ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION,
            api_keys=[ApiVersionsResponse.ApiVersion(API_VERSIONS_KEY, lo, hi)],
        )
        return Broker._frame(corr, 0, resp, False)


def error_of(exc: BaseException) -> tuple[int, str | None]:
    """(error code, message) for an exception raised while serving one resource."""
    if isinstance(exc, KafkaError):
        return int(exc.code), exc.message or None
    log.exception("unexpected error", exc_info=exc)
    return int(ErrorCode.UNKNOWN_SERVER_ERROR), str(exc) or None
