"""The broker's view of its settings: static (BrokerConfig), dynamic (AlterConfigs on BROKER
resources, durable in the data dir, see riverbed.metadata.broker_configs), and applying a
change without a restart: topic-config defaults to every log whose topic does not override
them, the log cleaner's settings, producer-id expiry, and listener TLS files (new
connections get the new certificate)."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from riverbed.metadata.broker_configs import (
    CLUSTER_WIDE,
    DynamicBrokerConfigStore,
    Layers,
    is_sensitive,
    listener_setting,
    validate_dynamic,
)
from riverbed.metadata.configs import BROKER_CONFIGS, BROKER_TO_TOPIC
from riverbed.protocol.errors import ErrorCode, KafkaError

from .config import LISTENER_TLS_ATTRS, BrokerConfig, ListenerConfig, ListenerSecurity

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("riverbed.configs")

# A TLS listener's reloader (set by the app): build a context from these settings (raise
# ValueError when they do not load); install it for new connections unless validate_only.
TlsReloader = Callable[[ListenerSecurity, bool], None]

# names whose default riverbed has no value for (Kafka reports null)
_NO_DEFAULT_VALUE = ("ssl.", "advertised.listeners", "remote.storage.path", "remote.storage.s3.bucket", "remote.storage.s3.endpoint", "remote.storage.s3.access", "remote.storage.s3.secret")


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _listeners_text(listeners: list[ListenerConfig], ports: Mapping[str, int], advertised: bool) -> str:
    out = []
    for lst in listeners:
        port = ports.get(lst.name, lst.port)
        if advertised:
            host, port = lst.advertised(port)
        else:
            host = lst.host
        out.append(f"{lst.name}://{host}:{port}")
    return ",".join(out)


def static_values(cfg: BrokerConfig, ports: Mapping[str, int]) -> dict[str, str]:
    """Kafka-named static settings: those given in the config file / flags, and those a
    caller (the test fixture, the embedded broker) set to something other than the default."""
    listeners = cfg.effective_listeners()
    derived: dict[str, str | None] = {
        "node.id": str(cfg.node_id),
        "broker.id": str(cfg.node_id),
        "log.dirs": str(cfg.data_dir),
        "listeners": _listeners_text(listeners, ports, advertised=False),
        "advertised.listeners": _listeners_text(listeners, ports, advertised=True),
        "auto.create.topics.enable": _bool(cfg.auto_create_topics),
        "num.partitions": str(cfg.num_partitions),
        "delete.topic.enable": _bool(cfg.delete_topic_enable),
        "log.retention.check.interval.ms": str(cfg.retention_check_interval_ms),
        "socket.request.max.bytes": str(cfg.max_request_size),
        "connections.max.idle.ms": str(cfg.connections_max_idle_ms),
        "connection.failed.authentication.delay.ms": str(cfg.connection_failed_authentication_delay_ms),
        "group.initial.rebalance.delay.ms": str(cfg.group_initial_rebalance_delay_ms),
        "group.consumer.session.timeout.ms": str(cfg.consumer_session_timeout_ms),
        "group.consumer.heartbeat.interval.ms": str(cfg.consumer_heartbeat_interval_ms),
        "riverbed.accept.replication.factor": _bool(cfg.accept_replication_factor),
        "transaction.max.timeout.ms": str(cfg.transaction_max_timeout_ms),
        "transactional.id.expiration.ms": str(cfg.transactional_id_expiration_ms),
        "producer.id.expiration.ms": str(cfg.producer_id_expiration_ms),
        "log.cleaner.enable": _bool(cfg.cleaner_enable),
        "log.cleaner.backoff.ms": str(cfg.cleaner_backoff_ms),
        "log.cleaner.dedupe.buffer.size": str(cfg.cleaner_dedupe_buffer_size),
        "log.cleaner.io.max.bytes.per.second": None if math.isinf(cfg.cleaner_io_max_bytes_per_second) else repr(cfg.cleaner_io_max_bytes_per_second),
        "allow.everyone.if.no.acl.found": _bool(cfg.allow_everyone_if_no_acl_found),
        "super.users": ";".join(cfg.super_users),
        "ssl.certificate.location": cfg.ssl_certificate_location,
        "ssl.keystore.location": cfg.ssl_certificate_location,
        "ssl.key.location": cfg.ssl_key_location,
        "ssl.key.password": cfg.ssl_key_password,
        "ssl.ca.location": cfg.ssl_ca_location,
        "ssl.truststore.location": cfg.ssl_ca_location,
        "ssl.client.auth": cfg.ssl_client_auth,
        "ssl.principal.mapping.rules": cfg.ssl_principal_mapping_rules,
        "sasl.enabled.mechanisms": ",".join(cfg.sasl_enabled_mechanisms),
        "remote.storage.path": cfg.remote_storage_path,
        "remote.storage.s3.bucket": cfg.remote_s3_bucket,
        **cfg.log_defaults,
    }
    defaults = default_values()
    out: dict[str, str] = {}
    for name, value in derived.items():
        if value is None:
            continue
        if name in cfg.static_settings or value != defaults.get(name, ""):
            out[name] = value
    for name, value in cfg.static_settings.items():
        if name not in derived:
            out[name] = value
    return out


def default_values() -> dict[str, str]:
    return {name: d.default for name, d in BROKER_CONFIGS.items() if not (d.default == "" and name.startswith(_NO_DEFAULT_VALUE))}


class DynamicConfigs:
    """The dynamic settings of one broker and their effect."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.store = DynamicBrokerConfigStore(broker.config.data_dir, broker.config.node_id)
        self.tls_reloaders: dict[str, TlsReloader] = {}  # listener name -> reloader (app)

    @property
    def node_id(self) -> str:
        return str(self.broker.config.node_id)

    def _listeners(self) -> set[str]:
        return {name.upper() for name in self.broker.listeners}

    def layers(self, level: str | None = None, props: Mapping[str, str] | None = None) -> Layers:
        """Every level's values; with ``level``/``props``, as they would be after a change."""
        dyn_default = self.store.default
        dyn_broker = self.store.broker
        if level == "":
            dyn_default = dict(props or {})
        elif level is not None:
            dyn_broker = dict(props or {})
        return Layers(dyn_broker, dyn_default, static_values(self.broker.config, self.broker.bound_ports), default_values())

    # ------------------------------------------------------------------ start-up
    def load(self) -> None:
        """Read the durable dynamic settings and apply them (before the logs are opened)."""
        self.store.load(self._listeners())
        if self.store.default or self.store.broker:
            log.info("dynamic broker configs: cluster default %s, broker %s %s", self._loggable(self.store.default), self.node_id, self._loggable(self.store.broker))
        self.apply(tls_listeners=self._tls_listeners(self.store.broker), at_start=True)

    # ------------------------------------------------------------------ values in force
    def value(self, name: str) -> str:
        value = self.layers().value(name)
        assert value is not None, name
        return value

    def int_value(self, name: str) -> int:
        return int(self.value(name))

    def log_defaults(self, layers: Layers | None = None) -> dict[str, str]:
        """Broker-level topic-config defaults set anywhere but Kafka's defaults (the static
        and dynamic ones, higher level winning)."""
        layers = layers or self.layers()
        out: dict[str, str] = {}
        for values in (layers.static, layers.dynamic_default, layers.dynamic_broker):
            out.update({k: v for k, v in values.items() if k in BROKER_TO_TOPIC})
        return out

    def listener_security(self, listener: ListenerConfig, layers: Layers | None = None) -> ListenerSecurity:
        """A listener's TLS settings with its dynamic per-broker overrides."""
        layers = layers or self.layers()
        changes: dict[str, Any] = {}
        for name, value in layers.dynamic_broker.items():
            key = listener_setting(name)
            if key is not None and key[0] == listener.name.upper() and key[1] in LISTENER_TLS_ATTRS:
                changes[LISTENER_TLS_ATTRS[key[1]]] = value or None
        return self.broker.config.listener_security(dataclasses.replace(listener, **changes))

    # ------------------------------------------------------------------ changes
    def _tls_listeners(self, *levels: Mapping[str, str]) -> set[str]:
        names = set()
        for props in levels:
            for name in props:
                key = listener_setting(name)
                if key is not None and key[1] in LISTENER_TLS_ATTRS:
                    names.add(key[0])
        return names

    def alter(self, level: str, props: dict[str, str], validate_only: bool) -> None:
        """Replace the dynamic settings of one level ("" = cluster default, else a node id)
        with ``props``: validate, then (unless validate_only) persist and apply."""
        if level != "":
            try:
                node = int(level)
            except ValueError:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {level}") from None
            if node != self.broker.config.node_id:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unexpected broker id, expected {self.node_id}, but received {level}")
            level = self.node_id
        validate_dynamic(props, level != "", self._listeners())
        unknown = sorted(n for n in props if n not in BROKER_CONFIGS and listener_setting(n) is None)
        new_layers = self.layers(level, props)
        tls = self._tls_listeners(props, self.store.level(level)) if level else set()
        for name in sorted(tls):
            self._reload_tls(name, new_layers, validate_only=True)
        if validate_only:
            return
        self.store.replace(level, props)
        if unknown:
            log.warning("dynamic broker config %s: unknown to riverbed, stored without effect (as Kafka keeps custom configs)", ", ".join(unknown))
        log.info("dynamic broker configs of %s now %s", f"broker {level}" if level else "the cluster default", self._loggable(props))
        self.apply(tls_listeners=tls)

    def _reload_tls(self, listener_name: str, layers: Layers, validate_only: bool) -> None:
        listener = next((lst for n, lst in self.broker.listeners.items() if n.upper() == listener_name), None)
        reloader = self.tls_reloaders.get(listener.name) if listener is not None else None
        if listener is None or reloader is None:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"listener {listener_name} has no TLS to reconfigure")
        try:
            reloader(self.listener_security(listener, layers), validate_only)
        except ValueError as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Validation of dynamic config update of SSLFactory failed: {exc}") from exc

    def apply(self, tls_listeners: set[str] = frozenset(), at_start: bool = False) -> None:  # type: ignore[assignment]
        """Put the settings in force now."""
        layers = self.layers()
        self.broker.set_broker_configs(self.log_defaults(layers))
        cleaner = getattr(self.broker.logs, "cleaner", None)
        if cleaner is not None and hasattr(cleaner, "reconfigure"):
            rate = float(layers.value("log.cleaner.io.max.bytes.per.second") or math.inf)
            cleaner.reconfigure(
                dedupe_buffer_bytes=int(layers.value("log.cleaner.dedupe.buffer.size") or 0),
                io_max_bytes_per_second=math.inf if rate >= sys.float_info.max else rate,  # Kafka's Double.MAX_VALUE: no throttle
                backoff_ms=int(layers.value("log.cleaner.backoff.ms") or 0),
            )
        for name in sorted(tls_listeners):
            try:
                self._reload_tls(name, layers, validate_only=False)
                log.info("listener %s: TLS material reloaded; new connections use it", name)
            except KafkaError as exc:
                if not at_start:
                    raise
                log.error("listener %s: dynamic TLS settings ignored: %s", name, exc.message)

    @staticmethod
    def _loggable(props: Mapping[str, str]) -> dict[str, str]:
        return {k: ("[hidden]" if is_sensitive(k) else v) for k, v in props.items()}


__all__ = ["CLUSTER_WIDE", "DynamicConfigs", "default_values", "static_values"]
