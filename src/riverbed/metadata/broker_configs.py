"""Dynamic broker configs (Kafka's KIP-226): settings changed at run time with AlterConfigs /
IncrementalAlterConfigs on a BROKER resource, at two levels, kept in
``<data dir>/broker-configs.json`` (written to a temp file, fsynced, renamed):

* per broker (resource name = the node id): DYNAMIC_BROKER_CONFIG;
* cluster-wide default (resource name ""): DYNAMIC_DEFAULT_BROKER_CONFIG.

Precedence, as Kafka's: per-broker dynamic > cluster-default dynamic > static (config file,
environment, flags) > default. Which settings may change, and at which level, follows Kafka's
``DynamicBrokerConfig`` ("Dynamic Update Mode" in Kafka's broker config docs): the topic-config
defaults (``log.*``, ``message.max.bytes``, ...), the log cleaner settings and
``producer.id.expiration.ms`` are cluster-wide; listener TLS files
(``listener.name.<listener>.ssl.*``) are per-broker only, and never without the listener
prefix. Everything else riverbed knows is read-only. Names riverbed does not know are kept
(Kafka keeps them as custom configs for plugins) and reported as sensitive, as Kafka does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from riverbed.protocol.errors import ErrorCode, KafkaError

from .configs import BROKER_CONFIGS, BROKER_TO_TOPIC, ConfigSource, ConfigType

log = logging.getLogger("riverbed.configs")

DYNAMIC_CONFIG_FILE = "broker-configs.json"

# Cluster-wide dynamic settings riverbed applies at run time (Kafka: DynamicLogConfig,
# LogCleaner.ReconfigurableConfigs, DynamicProducerStateManagerConfig).
CLUSTER_WIDE: frozenset[str] = frozenset(
    {
        *BROKER_TO_TOPIC,
        "log.cleaner.threads",
        "log.cleaner.dedupe.buffer.size",
        "log.cleaner.io.max.bytes.per.second",
        "log.cleaner.backoff.ms",
        "producer.id.expiration.ms",
    }
)

# Listener TLS files riverbed reloads (Kafka: SslConfigs.RECONFIGURABLE_CONFIGS, as PEM files);
# per-broker, only as listener.name.<listener>.<setting>.
LISTENER_RELOADABLE: frozenset[str] = frozenset(
    {
        "ssl.keystore.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.truststore.location",
        "ssl.ca.location",
    }
)

# Kafka's names of reloadable TLS settings (plus riverbed's PEM aliases): refused without the
# listener prefix, as Kafka refuses them.
SECURITY_WITHOUT_PREFIX: frozenset[str] = LISTENER_RELOADABLE | {
    "ssl.keystore.type",
    "ssl.keystore.password",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
}

LISTENER_PREFIX = "listener.name."


def listener_setting(name: str) -> tuple[str, str] | None:
    """``listener.name.<listener>.<setting>`` as (listener in upper case, setting)."""
    if not name.startswith(LISTENER_PREFIX):
        return None
    listener, _, setting = name[len(LISTENER_PREFIX) :].partition(".")
    if not listener or not setting:
        return None
    return listener.upper(), setting


def config_type(name: str) -> ConfigType | None:
    """The type of a broker setting (a listener override has its base setting's type); None
    for a name riverbed does not know."""
    d = BROKER_CONFIGS.get(name)
    if d is None:
        key = listener_setting(name)
        d = BROKER_CONFIGS.get(key[1]) if key is not None else None
    return d.type if d is not None else None


def is_sensitive(name: str) -> bool:
    """Kafka's ``maybeSensitive``: passwords, and names of unknown type (to be safe)."""
    t = config_type(name)
    return t is None or t == ConfigType.PASSWORD


def is_dynamic(name: str) -> bool:
    """May ``name`` change at run time in riverbed (DescribeConfigs read_only = not this)?"""
    if name in CLUSTER_WIDE:
        return True
    key = listener_setting(name)
    return key is not None and key[1] in LISTENER_RELOADABLE


def _kafka_set(names: list[str]) -> str:
    return "Set(" + ", ".join(sorted(names)) + ")"


def validate_dynamic(props: Mapping[str, str], per_broker: bool, listeners: set[str]) -> None:
    """Kafka's checks of the dynamic settings of one level (after the change); raise
    KafkaError(INVALID_CONFIG) naming the offending settings."""
    read_only = []
    without_prefix = []
    unknown_listener = []
    for name in props:
        key = listener_setting(name)
        if key is not None:
            if key[0] not in listeners:
                unknown_listener.append(name)
            elif key[1] in BROKER_CONFIGS and key[1] not in LISTENER_RELOADABLE:
                read_only.append(name)
        elif name in SECURITY_WITHOUT_PREFIX:
            without_prefix.append(name)
        elif name in BROKER_CONFIGS and name not in CLUSTER_WIDE:
            read_only.append(name)
    if read_only:
        raise KafkaError(ErrorCode.INVALID_CONFIG, f"Cannot update these configs dynamically: {_kafka_set(read_only)}")
    if without_prefix:
        raise KafkaError(
            ErrorCode.INVALID_CONFIG,
            f"These security configs can be dynamically updated only per-listener using the listener prefix: {_kafka_set(without_prefix)}",
        )
    if unknown_listener:
        raise KafkaError(ErrorCode.INVALID_CONFIG, f"No such listener on this broker: {_kafka_set(unknown_listener)}")
    for name, value in props.items():
        key = listener_setting(name)
        d = BROKER_CONFIGS.get(key[1] if key is not None else name)
        if d is not None:
            d.parse(value)
    if not per_broker:
        per_broker_names = [n for n in props if listener_setting(n) is not None]
        if per_broker_names:
            raise KafkaError(
                ErrorCode.INVALID_CONFIG,
                f"Cannot update these configs at default cluster level, broker id must be specified: {_kafka_set(per_broker_names)}",
            )


def _invalid(props: Mapping[str, str], per_broker: bool, listeners: set[str]) -> list[str]:
    bad = []
    for name, value in props.items():
        try:
            validate_dynamic({name: value}, per_broker, listeners)
        except KafkaError:
            bad.append(name)
    return bad


class DynamicBrokerConfigStore:
    """The two levels of dynamic settings, durable in the data dir. Per-broker settings are
    kept by node id (a broker started with another node id uses that id's)."""

    def __init__(self, data_dir: Path, node_id: int) -> None:
        self.path = data_dir / DYNAMIC_CONFIG_FILE
        self.node_id = str(node_id)
        self.default: dict[str, str] = {}
        self._brokers: dict[str, dict[str, str]] = {}

    @property
    def broker(self) -> dict[str, str]:
        return self._brokers.setdefault(self.node_id, {})

    def load(self, listeners: set[str]) -> None:
        """Read the file; settings that are no longer valid are dropped with an error in the
        log (as Kafka ignores invalid persisted dynamic configs)."""
        if not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text())
            default = {str(k): str(v) for k, v in doc.get("default", {}).items()}
            brokers = {str(b): {str(k): str(v) for k, v in c.items()} for b, c in doc.get("brokers", {}).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"cannot read dynamic broker configs {self.path}: {exc}") from exc
        for level, props, per_broker in (("cluster default", default, False), (f"broker {self.node_id}", brokers.get(self.node_id, {}), True)):
            bad = _invalid(props, per_broker, listeners)
            for name in bad:
                log.error("dynamic %s config %s in %s is not valid here and is ignored", level, name, self.path)
                props.pop(name)
        self.default = default
        self._brokers = brokers

    def replace(self, level: str, props: Mapping[str, str]) -> None:
        """Set every dynamic setting of one level ("" or this node's id) and save."""
        if level == "":
            self.default = dict(props)
        else:
            self._brokers[level] = dict(props)
        self._save()

    def level(self, level: str) -> dict[str, str]:
        return dict(self.default if level == "" else self._brokers.get(level, {}))

    def _save(self) -> None:
        doc = {"version": 1, "default": self.default, "brokers": {b: c for b, c in self._brokers.items() if c}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold key passwords
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class Synonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class Layers:
    """The values of every level, by Kafka name, highest precedence first."""

    dynamic_broker: Mapping[str, str]
    dynamic_default: Mapping[str, str]
    static: Mapping[str, str]
    default: Mapping[str, str]

    def synonyms(self, name: str, sensitive: bool | None = None) -> list[Synonym]:
        """Kafka's ``configSynonyms``: the name and (for a listener override) its base
        setting, at every level where set, in precedence order; the entries before the
        first of ``name`` itself are dropped."""
        key = listener_setting(name)
        names = [name] if key is None else [name, key[1]]
        hide = is_sensitive(name) if sensitive is None else sensitive
        out = []
        for source, values in (
            (ConfigSource.DYNAMIC_BROKER_CONFIG, self.dynamic_broker),
            (ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, self.dynamic_default),
            (ConfigSource.STATIC_BROKER_CONFIG, self.static),
            (ConfigSource.DEFAULT_CONFIG, self.default),
        ):
            for n in names:
                if n in values:
                    out.append(Synonym(n, None if hide else values[n], source))
        while out and out[0].name != name:
            out.pop(0)
        return out

    def value(self, name: str) -> str | None:
        """The effective value (None when unset everywhere)."""
        for values in (self.dynamic_broker, self.dynamic_default, self.static, self.default):
            if name in values:
                return values[name]
        key = listener_setting(name)
        return None if key is None else self.value(key[1])

    def effective(self) -> dict[str, str]:
        out = dict(self.default)
        for values in (self.static, self.dynamic_default, self.dynamic_broker):
            out.update(values)
        return out
