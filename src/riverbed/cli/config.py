"""Broker configuration from a TOML file, then RIVERBED_* environment variables, then flags
(each later source wins).

File example::

    listen = "127.0.0.1:9092"
    advertised = "127.0.0.1:9092"
    data_dir = "./riverbed-data"
    node_id = 1
    auto_create_topics = true
    num_partitions = 1

    [kafka]                      # Kafka broker settings, by Kafka's names
    "log.retention.ms" = 604800000
    "log.segment.bytes" = 1073741824
    "remote.storage.path" = "/srv/riverbed-tier"   # tiered storage (or remote.storage.s3.*)
    # listeners and security (docs/security.md); replaces listen/advertised
    "listeners" = "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9094"
    "advertised.listeners" = "SASL_SSL://kafka.example.com:9094"
    "ssl.certificate.location" = "/etc/riverbed/server.pem"
    "ssl.key.location" = "/etc/riverbed/server.key"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riverbed.broker import BrokerConfig, ListenerConfigError, parse_listeners
from riverbed.metadata.configs import BROKER_CONFIGS, BROKER_TO_TOPIC
from riverbed.protocol.errors import KafkaError

ENV_PREFIX = "RIVERBED_"
SIMPLE_KEYS = {"listen", "advertised", "data_dir", "node_id", "auto_create_topics", "num_partitions", "log_level", "flush_syncfs", "max_open_segment_files"}
# tables of the services `riverbed serve` runs beside the broker (read by cli.main._service_settings)
SERVICE_TABLES = {"registry", "console", "metrics", "sql"}


# tiered-storage settings that are optional strings on BrokerConfig
_REMOTE_STRINGS = {
    "remote.storage.path": "remote_storage_path",
    "remote.storage.s3.bucket": "remote_s3_bucket",
    "remote.storage.s3.endpoint": "remote_s3_endpoint",
    "remote.storage.s3.access.key": "remote_s3_access_key",
    "remote.storage.s3.secret.key": "remote_s3_secret_key",
}


# listener and security settings (Kafka's names; docs/security.md), not topic defaults
_LISTENER_KEYS = ("listeners", "advertised.listeners", "listener.security.protocol.map")
_SECURITY_STRINGS = {
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
    "ssl.key.password": "ssl_key_password",
    "ssl.ca.location": "ssl_ca_location",
    # Kafka's names, for PEM files
    "ssl.keystore.location": "ssl_certificate_location",
    "ssl.truststore.location": "ssl_ca_location",
}
_SECURITY_BOOLS = {"ssl.allow.dn.changes": "ssl_allow_dn_changes", "ssl.allow.san.changes": "ssl_allow_san_changes"}
SECURITY_KEYS = {*_LISTENER_KEYS, *_SECURITY_STRINGS, *_SECURITY_BOOLS, "ssl.client.auth", "ssl.principal.mapping.rules", "sasl.enabled.mechanisms"}


class ConfigError(ValueError):
    pass


_PER_LISTENER = (*_SECURITY_STRINGS, *_SECURITY_BOOLS, "ssl.client.auth", "ssl.principal.mapping.rules", "sasl.enabled.mechanisms")


def _listener_key(name: str) -> tuple[str, str] | None:
    """``listener.name.<listener>.<setting>`` as (LISTENER, setting), for the settings a
    listener may have of its own; None for any other name."""
    if not name.startswith("listener.name."):
        return None
    listener, _, setting = name[len("listener.name.") :].partition(".")
    if listener and setting in _PER_LISTENER:
        return listener.upper(), setting
    return None


def _security_values(settings: Mapping[str, str], where: str = "") -> dict[str, Any]:
    """The checked BrokerConfig/ListenerConfig attributes for TLS and SASL settings (Kafka's
    names); ``where`` prefixes the names in error messages."""
    from riverbed.security.principal import RuleSyntaxError, parse_rules
    from riverbed.security.sasl import SUPPORTED_MECHANISMS

    out: dict[str, Any] = {}
    for name, attr in _SECURITY_STRINGS.items():
        if name in settings:
            out[attr] = settings[name] or None
    for name, attr in _SECURITY_BOOLS.items():
        if name in settings:
            try:
                out[attr] = _bool(settings[name])
            except ConfigError as exc:
                raise ConfigError(f"{where}{name}: {exc}") from None
    if "ssl.client.auth" in settings:
        value = settings["ssl.client.auth"].strip().lower()
        if value not in ("none", "requested", "required"):
            raise ConfigError(f"{where}ssl.client.auth must be none, requested or required, not {value!r}")
        out["ssl_client_auth"] = value
    if "ssl.principal.mapping.rules" in settings:
        try:
            parse_rules(settings["ssl.principal.mapping.rules"])
        except RuleSyntaxError as exc:
            raise ConfigError(f"{where}{exc}") from exc
        out["ssl_principal_mapping_rules"] = settings["ssl.principal.mapping.rules"]
    if "sasl.enabled.mechanisms" in settings:
        mechanisms = tuple(m.strip().upper() for m in settings["sasl.enabled.mechanisms"].split(",") if m.strip())
        bad = [m for m in mechanisms if m not in SUPPORTED_MECHANISMS]
        if bad or not mechanisms:
            raise ConfigError(f"{where}sasl.enabled.mechanisms: choose from {', '.join(SUPPORTED_MECHANISMS)} (got {settings['sasl.enabled.mechanisms']!r})")
        out["sasl_enabled_mechanisms"] = mechanisms
    return out


def _apply_security(cfg: BrokerConfig, settings: Mapping[str, str]) -> None:
    for attr, value in _security_values(settings).items():
        setattr(cfg, attr, value)
    if "listeners" in settings:
        try:
            cfg.listeners = parse_listeners(settings["listeners"], settings.get("advertised.listeners", ""), settings.get("listener.security.protocol.map", ""))
        except ListenerConfigError as exc:
            raise ConfigError(str(exc)) from exc
    elif "advertised.listeners" in settings or "listener.security.protocol.map" in settings:
        raise ConfigError("advertised.listeners and listener.security.protocol.map need listeners")
    own: dict[str, dict[str, str]] = {}
    for name, value in settings.items():
        key = _listener_key(name)
        if key is not None:
            own.setdefault(key[0], {})[key[1]] = value
    by_name = {listener.name.upper(): listener for listener in cfg.listeners}
    for listener_name, values in own.items():
        target = by_name.get(listener_name)
        if target is None:
            raise ConfigError(f"listener.name.{listener_name.lower()}.*: no listener {listener_name} in listeners")
        for attr, value in _security_values(values, f"listener.name.{listener_name.lower()}.").items():
            setattr(target, attr, value)
    for listener in cfg.listeners:
        sec = cfg.listener_security(listener)
        if listener.tls and not sec.certificate:
            raise ConfigError(f"listener {listener.name} ({listener.protocol}) needs ssl.certificate.location and ssl.key.location")
        if listener.tls and sec.client_auth != "none" and not sec.ca:
            raise ConfigError(f"listener {listener.name}: ssl.client.auth requested/required needs ssl.ca.location (the CA of client certificates)")


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected a boolean, got {value!r}")


def load_config(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    kafka_flags: Mapping[str, str] | None = None,
) -> tuple[BrokerConfig, str]:
    """Merge the three sources; return the broker config and the log level."""
    settings: dict[str, Any] = {}
    kafka: dict[str, str] = {}
    if file is not None:
        try:
            doc = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from exc
        for key, value in doc.items():
            if key == "kafka":
                kafka.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()})
            elif key in SIMPLE_KEYS:
                settings[key] = value
            elif key in SERVICE_TABLES and isinstance(value, dict):
                continue
            else:
                raise ConfigError(f"unknown setting {key!r} in {file}")
    env = os.environ if env is None else env
    for key in SIMPLE_KEYS:
        if ENV_PREFIX + key.upper() in env:
            settings[key] = env[ENV_PREFIX + key.upper()]
    for key, value in (flags or {}).items():
        if value is not None:
            settings[key] = value
    kafka.update(kafka_flags or {})
    security = {k: kafka.pop(k) for k in list(kafka) if k in SECURITY_KEYS or _listener_key(k) is not None}

    cfg = BrokerConfig()
    if "listen" in settings:
        cfg.host, cfg.port = parse_hostport(str(settings["listen"]), "listen")
    if "advertised" in settings:
        cfg.advertised_host, cfg.advertised_port = parse_hostport(str(settings["advertised"]), "advertised")
    if "data_dir" in settings:
        cfg.data_dir = Path(str(settings["data_dir"]))
    try:
        if "node_id" in settings:
            cfg.node_id = int(settings["node_id"])
        if "num_partitions" in settings:
            cfg.num_partitions = int(settings["num_partitions"])
        if "max_open_segment_files" in settings:
            cfg.max_open_segment_files = int(settings["max_open_segment_files"])
            if cfg.max_open_segment_files < 0:
                raise ValueError("max_open_segment_files must be 0 (automatic) or more")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if "auto_create_topics" in settings:
        cfg.auto_create_topics = _bool(settings["auto_create_topics"])
    if "flush_syncfs" in settings:
        cfg.flush_syncfs = _bool(settings["flush_syncfs"])
    for name, value in kafka.items():
        definition = BROKER_CONFIGS.get(name)
        if definition is None:
            raise ConfigError(f"unknown Kafka broker setting {name!r}")
        try:
            definition.parse(value)
        except KafkaError as exc:
            raise ConfigError(exc.message) from exc
        if name in BROKER_TO_TOPIC:
            cfg.log_defaults[name] = value
        elif name in ("node.id", "broker.id"):
            cfg.node_id = int(value)
        elif name == "log.dirs":
            if "," in value:
                raise ConfigError("log.dirs: riverbed keeps its data in one directory")
            cfg.data_dir = Path(value.strip())
        elif name == "process.roles":
            if sorted(r.strip() for r in value.split(",") if r.strip()) != ["broker", "controller"]:
                raise ConfigError("process.roles: riverbed is one combined node (broker,controller)")
        elif name == "auto.create.topics.enable":
            cfg.auto_create_topics = _bool(value)
        elif name == "num.partitions":
            cfg.num_partitions = int(value)
        elif name == "delete.topic.enable":
            cfg.delete_topic_enable = _bool(value)
        elif name == "riverbed.accept.replication.factor":
            cfg.accept_replication_factor = _bool(value)
        elif name == "log.retention.check.interval.ms":
            cfg.retention_check_interval_ms = int(value)
        elif name == "socket.request.max.bytes":
            cfg.max_request_size = int(value)
        elif name == "connections.max.idle.ms":
            cfg.connections_max_idle_ms = int(value)
        elif name == "connection.failed.authentication.delay.ms":
            cfg.connection_failed_authentication_delay_ms = int(value)
        elif name == "group.initial.rebalance.delay.ms":
            cfg.group_initial_rebalance_delay_ms = int(value)
        elif name == "max.incremental.fetch.session.cache.slots":
            cfg.fetch_session_cache_slots = int(value)
        elif name == "group.consumer.session.timeout.ms":
            cfg.consumer_session_timeout_ms = int(value)
        elif name == "group.consumer.heartbeat.interval.ms":
            cfg.consumer_heartbeat_interval_ms = int(value)
        elif name == "transaction.max.timeout.ms":
            cfg.transaction_max_timeout_ms = int(value)
        elif name == "transactional.id.expiration.ms":
            cfg.transactional_id_expiration_ms = int(value)
        elif name == "transaction.abort.timed.out.transaction.cleanup.interval.ms":
            cfg.transaction_abort_interval_ms = int(value)
        elif name == "producer.id.expiration.ms":
            cfg.producer_id_expiration_ms = int(value)
        elif name == "authorizer.class.name":
            cfg.authorizer_enabled = bool(str(value).strip())
        elif name == "super.users":
            cfg.super_users = tuple(u.strip() for u in str(value).split(";") if u.strip())
        elif name == "allow.everyone.if.no.acl.found":
            cfg.allow_everyone_if_no_acl_found = _bool(value)
        elif name == "log.cleaner.enable":
            cfg.cleaner_enable = _bool(value)
        elif name == "log.cleaner.backoff.ms":
            cfg.cleaner_backoff_ms = int(value)
        elif name == "log.cleaner.dedupe.buffer.size":
            cfg.cleaner_dedupe_buffer_size = int(value)
        elif name == "log.cleaner.io.max.bytes.per.second":
            cfg.cleaner_io_max_bytes_per_second = float(value)
        elif name in _REMOTE_STRINGS:
            setattr(cfg, _REMOTE_STRINGS[name], value or None)
        elif name == "remote.storage.s3.region":
            cfg.remote_s3_region = value
        elif name == "remote.storage.s3.prefix":
            cfg.remote_s3_prefix = value
        elif name == "remote.log.reader.cache.bytes":
            cfg.remote_reader_cache_bytes = int(value)
        elif name == "remote.log.reader.threads":
            cfg.remote_reader_threads = int(value)
        elif name == "remote.log.manager.task.interval.ms":
            cfg.remote_task_interval_ms = int(value)
        elif name == "remote.log.manager.task.retry.backoff.ms":
            cfg.remote_retry_backoff_ms = int(value)
        elif name == "remote.log.manager.task.retry.backoff.max.ms":
            cfg.remote_retry_backoff_max_ms = int(value)
    if "listeners" in security and ("listen" in settings or "advertised" in settings):
        raise ConfigError("set either listen/advertised or listeners/advertised.listeners, not both")
    _apply_security(cfg, security)
    # what was given by Kafka's name: DescribeConfigs reports it as STATIC_BROKER_CONFIG
    cfg.static_settings = {**kafka, **security}
    for key, kafka_name in (("node_id", "node.id"), ("data_dir", "log.dirs"), ("num_partitions", "num.partitions"), ("auto_create_topics", "auto.create.topics.enable")):
        if key in settings:
            cfg.static_settings.setdefault(kafka_name, str(settings[key]).lower() if key == "auto_create_topics" else str(settings[key]))
    if "node_id" in settings or "node.id" in kafka:
        cfg.static_settings.setdefault("broker.id", str(cfg.node_id))
    if cfg.remote_storage_path and cfg.remote_s3_bucket:
        raise ConfigError("set remote.storage.path or remote.storage.s3.bucket, not both")
    return cfg, str(settings.get("log_level", "INFO")).upper()
