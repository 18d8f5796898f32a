"""Topic and broker configuration: Kafka's names, types, defaults and validation rules.

Values are kept as strings (as on the wire); ``parse`` turns one into its typed value.
riverbed differs from Kafka's defaults in one place on purpose: ``flush.messages`` defaults
to 1, which makes every acks=all response wait for the (group-committed) fsync covering the
batch. See docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from riverbed.protocol.errors import ErrorCode, KafkaError

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class ConfigType(IntEnum):
    """DescribeConfigs v3+ config_type."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(IntEnum):
    """DescribeConfigs v1+ config_source."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6


ConfigValue = int | float | bool | str | list[str]


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: ConfigType
    default: str
    validator: Callable[[ConfigValue], str | None] | None = None
    doc: str = ""

    def parse(self, raw: str) -> ConfigValue:
        """Parse and validate a raw string; raise KafkaError(INVALID_CONFIG)."""
        try:
            value: ConfigValue
            t = self.type
            if t in (ConfigType.INT, ConfigType.LONG, ConfigType.SHORT):
                value = int(raw.strip())
                limit = {ConfigType.INT: INT_MAX, ConfigType.LONG: LONG_MAX, ConfigType.SHORT: 2**15 - 1}[t]
                if not -limit - 1 <= value <= limit:
                    raise ValueError("out of range")
            elif t == ConfigType.DOUBLE:
                value = float(raw)
            elif t == ConfigType.BOOLEAN:
                low = raw.strip().lower()
                if low not in ("true", "false"):
                    raise ValueError("expected true or false")
                value = low == "true"
            elif t == ConfigType.LIST:
                value = [p.strip() for p in raw.split(",") if p.strip()]
            else:
                value = raw
        except ValueError as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Invalid value {raw} for configuration {self.name}: {exc}") from exc
        if self.validator is not None:
            problem = self.validator(value)
            if problem:
                raise KafkaError(ErrorCode.INVALID_CONFIG, f"Invalid value {raw} for configuration {self.name}: {problem}")
        return value


def at_least(n: float) -> Callable[[ConfigValue], str | None]:
    def check(v: ConfigValue) -> str | None:
        assert isinstance(v, int | float)
        return None if v >= n else f"Value must be at least {n}"

    return check


def between(lo: float, hi: float) -> Callable[[ConfigValue], str | None]:
    def check(v: ConfigValue) -> str | None:
        assert isinstance(v, int | float)
        return None if lo <= v <= hi else f"Value must be between {lo} and {hi}"

    return check


def one_of(*choices: str) -> Callable[[ConfigValue], str | None]:
    def check(v: ConfigValue) -> str | None:
        values = v if isinstance(v, list) else [str(v)]
        bad = [x for x in values if x not in choices]
        return f"String must be one of: {', '.join(choices)}" if bad else None

    return check


_STRATEGY_PACKAGE = "io.confluent.kafka.serializers.subject."
TOPIC_NAME_STRATEGY = _STRATEGY_PACKAGE + "TopicNameStrategy"
#: the subject name strategies, by Confluent's class names and by their short names
SUBJECT_NAME_STRATEGIES = tuple(p + n for n in ("TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy") for p in (_STRATEGY_PACKAGE, ""))

T = ConfigType
TOPIC_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in [
        ConfigDef("cleanup.policy", T.LIST, "delete", one_of("delete", "compact")),
        ConfigDef("compression.type", T.STRING, "producer", one_of("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
        ConfigDef("delete.retention.ms", T.LONG, "86400000", at_least(0)),
        ConfigDef("file.delete.delay.ms", T.LONG, "60000", at_least(0)),
        ConfigDef("flush.messages", T.LONG, "1", at_least(1)),
        ConfigDef("flush.ms", T.LONG, "1000", at_least(0)),
        ConfigDef("follower.replication.throttled.replicas", T.LIST, ""),
        ConfigDef("index.interval.bytes", T.INT, "4096", at_least(0)),
        ConfigDef("leader.replication.throttled.replicas", T.LIST, ""),
        ConfigDef("local.retention.bytes", T.LONG, "-2", at_least(-2)),
        ConfigDef("local.retention.ms", T.LONG, "-2", at_least(-2)),
        ConfigDef("max.compaction.lag.ms", T.LONG, str(LONG_MAX), at_least(1)),
        ConfigDef("max.message.bytes", T.INT, "1048588", at_least(0)),
        ConfigDef("message.timestamp.after.max.ms", T.LONG, str(LONG_MAX), at_least(0)),
        ConfigDef("message.timestamp.before.max.ms", T.LONG, str(LONG_MAX), at_least(0)),
        ConfigDef("message.timestamp.type", T.STRING, "CreateTime", one_of("CreateTime", "LogAppendTime")),
        ConfigDef("min.cleanable.dirty.ratio", T.DOUBLE, "0.5", between(0, 1)),
        ConfigDef("min.compaction.lag.ms", T.LONG, "0", at_least(0)),
        ConfigDef("min.insync.replicas", T.INT, "1", at_least(1)),
        ConfigDef("preallocate", T.BOOLEAN, "false"),
        ConfigDef("remote.storage.enable", T.BOOLEAN, "false"),
        ConfigDef("retention.bytes", T.LONG, "-1"),
        ConfigDef("retention.ms", T.LONG, "604800000", at_least(-1)),
        ConfigDef("segment.bytes", T.INT, "1073741824", at_least(14)),
        ConfigDef("segment.index.bytes", T.INT, "10485760", at_least(4)),
        ConfigDef("segment.jitter.ms", T.LONG, "0", at_least(0)),
        ConfigDef("segment.ms", T.LONG, "604800000", at_least(1)),
        ConfigDef("unclean.leader.election.enable", T.BOOLEAN, "false"),
        # KIP-1191: the topic may be a share group's dead-letter topic (docs/share-groups.md)
        ConfigDef("errors.deadletterqueue.group.enable", T.BOOLEAN, "false"),
        # schema ids checked at produce time (Confluent Server's names; docs/registry.md)
        ConfigDef("confluent.key.schema.validation", T.BOOLEAN, "false"),
        ConfigDef("confluent.value.schema.validation", T.BOOLEAN, "false"),
        ConfigDef("confluent.key.subject.name.strategy", T.STRING, TOPIC_NAME_STRATEGY, one_of(*SUBJECT_NAME_STRATEGIES)),
        ConfigDef("confluent.value.subject.name.strategy", T.STRING, TOPIC_NAME_STRATEGY, one_of(*SUBJECT_NAME_STRATEGIES)),
        # riverbed's: "full" also decodes the payload against the schema
        ConfigDef("riverbed.key.schema.validation", T.STRING, "id", one_of("id", "full")),
        ConfigDef("riverbed.value.schema.validation", T.STRING, "id", one_of("id", "full")),
    ]
}

# Broker-level settings reported by DescribeConfigs for the broker resource. Topic settings
# whose broker-level name differs get their default from here (log.retention.ms -> retention.ms).
BROKER_TO_TOPIC = {
    "log.cleanup.policy": "cleanup.policy",
    "compression.type": "compression.type",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.segment.delete.delay.ms": "file.delete.delay.ms",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "message.max.bytes": "max.message.bytes",
    "log.message.timestamp.type": "message.timestamp.type",
    "log.message.timestamp.before.max.ms": "message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms": "message.timestamp.after.max.ms",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "min.insync.replicas": "min.insync.replicas",
    "log.preallocate": "preallocate",
    "log.retention.bytes": "retention.bytes",
    "log.retention.ms": "retention.ms",
    "log.segment.bytes": "segment.bytes",
    "log.index.size.max.bytes": "segment.index.bytes",
    "log.roll.jitter.ms": "segment.jitter.ms",
    "log.roll.ms": "segment.ms",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
}

BROKER_CONFIGS: dict[str, ConfigDef] = {
    **{
        name: ConfigDef(name, TOPIC_CONFIGS[topic].type, TOPIC_CONFIGS[topic].default, TOPIC_CONFIGS[topic].validator)
        for name, topic in BROKER_TO_TOPIC.items()
    },
    **{
        d.name: d
        for d in [
            ConfigDef("auto.create.topics.enable", T.BOOLEAN, "true"),
            ConfigDef("num.partitions", T.INT, "1", at_least(1)),
            ConfigDef("default.replication.factor", T.INT, "1", between(1, 1)),
            ConfigDef("riverbed.accept.replication.factor", T.BOOLEAN, "false"),
            ConfigDef("delete.topic.enable", T.BOOLEAN, "true"),
            ConfigDef("log.retention.check.interval.ms", T.LONG, "300000", at_least(1)),
            ConfigDef("socket.request.max.bytes", T.INT, "104857600", at_least(1)),
            ConfigDef("connections.max.idle.ms", T.LONG, "600000"),
            ConfigDef("connection.failed.authentication.delay.ms", T.INT, "100", at_least(0)),
            ConfigDef("offsets.topic.replication.factor", T.SHORT, "1", between(1, 1)),
            ConfigDef("transaction.state.log.replication.factor", T.SHORT, "1", between(1, 1)),
            ConfigDef("group.initial.rebalance.delay.ms", T.INT, "3000", at_least(0)),
            ConfigDef("group.consumer.session.timeout.ms", T.INT, "45000", at_least(1)),
            ConfigDef("group.consumer.heartbeat.interval.ms", T.INT, "5000", at_least(1)),
            ConfigDef("transaction.max.timeout.ms", T.INT, "900000", at_least(1)),
            ConfigDef("transactional.id.expiration.ms", T.INT, "604800000", at_least(1)),
            ConfigDef("transaction.abort.timed.out.transaction.cleanup.interval.ms", T.INT, "10000", at_least(1)),
            ConfigDef("producer.id.expiration.ms", T.INT, "86400000", at_least(1)),
            ConfigDef("log.cleaner.enable", T.BOOLEAN, "true"),
            ConfigDef("authorizer.class.name", T.STRING, ""),
            ConfigDef("super.users", T.STRING, ""),
            ConfigDef("allow.everyone.if.no.acl.found", T.BOOLEAN, "false"),
            ConfigDef("log.cleaner.backoff.ms", T.LONG, "15000", at_least(0)),
            ConfigDef("log.cleaner.dedupe.buffer.size", T.LONG, "134217728", at_least(1 << 20)),
            ConfigDef("log.cleaner.io.max.bytes.per.second", T.DOUBLE, "1.7976931348623157E308", at_least(1)),
            ConfigDef("log.cleaner.threads", T.INT, "1", between(1, 1)),  # riverbed's cleaner has one thread
            # identity, listeners and TLS (read-only but listed, as Kafka lists them)
            ConfigDef("node.id", T.INT, "1"),
            ConfigDef("broker.id", T.INT, "1"),
            ConfigDef("process.roles", T.LIST, "broker,controller"),
            ConfigDef("log.dirs", T.STRING, "riverbed-data"),
            ConfigDef("listeners", T.LIST, "PLAINTEXT://127.0.0.1:9092"),
            ConfigDef("advertised.listeners", T.LIST, ""),
            ConfigDef("listener.security.protocol.map", T.LIST, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
            ConfigDef("ssl.keystore.location", T.STRING, ""),
            ConfigDef("ssl.certificate.location", T.STRING, ""),
            ConfigDef("ssl.key.location", T.STRING, ""),
            ConfigDef("ssl.key.password", T.PASSWORD, ""),
            ConfigDef("ssl.truststore.location", T.STRING, ""),
            ConfigDef("ssl.ca.location", T.STRING, ""),
            ConfigDef("ssl.client.auth", T.STRING, "none", one_of("none", "requested", "required")),
            ConfigDef("ssl.principal.mapping.rules", T.STRING, "DEFAULT"),
            ConfigDef("ssl.allow.dn.changes", T.BOOLEAN, "false"),
            ConfigDef("ssl.allow.san.changes", T.BOOLEAN, "false"),
            ConfigDef("sasl.enabled.mechanisms", T.LIST, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"),
            # tiered storage (riverbed's names for the store; Kafka's for the rest)
            ConfigDef("remote.storage.path", T.STRING, ""),
            ConfigDef("remote.storage.s3.bucket", T.STRING, ""),
            ConfigDef("remote.storage.s3.endpoint", T.STRING, ""),
            ConfigDef("remote.storage.s3.region", T.STRING, "us-east-1"),
            ConfigDef("remote.storage.s3.access.key", T.STRING, ""),
            ConfigDef("remote.storage.s3.secret.key", T.PASSWORD, ""),
            ConfigDef("remote.storage.s3.prefix", T.STRING, ""),
            ConfigDef("remote.log.reader.cache.bytes", T.LONG, str(64 << 20), at_least(1 << 20)),  # at least one 1 MiB block
            ConfigDef("remote.log.reader.threads", T.INT, "10", at_least(1)),
            ConfigDef("remote.log.manager.task.interval.ms", T.LONG, "30000", at_least(1)),
            ConfigDef("remote.log.manager.task.retry.backoff.ms", T.LONG, "500", at_least(1)),
            ConfigDef("remote.log.manager.task.retry.backoff.max.ms", T.LONG, "30000", at_least(1)),
        ]
    },
}


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check names and values of topic config overrides; None values are dropped (= default)."""
    out: dict[str, str] = {}
    for name, raw in configs.items():
        d = TOPIC_CONFIGS.get(name)
        if d is None:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
        if raw is None:
            continue
        d.parse(raw)
        out[name] = raw
    _check_compaction_lags(out)
    return out


REMOTE_NOT_CONFIGURED = "remote storage is not configured on this broker"


def check_tiering(effective: Mapping[str, str], current: Mapping[str, str] | None, remote_available: bool) -> None:
    """Kafka's checks of a topic's tiering settings (``effective``: every topic config of
    the new state; ``current``: the old one, None for a new topic): remote storage needs a
    store on the broker and cannot be switched off again; with it on, local.retention.ms /
    local.retention.bytes must not exceed retention.ms / retention.bytes (-2 = the same)."""
    enable = effective.get("remote.storage.enable", "false").strip().lower() == "true"
    if current is not None and current.get("remote.storage.enable", "false").strip().lower() == "true" and not enable:
        raise KafkaError(ErrorCode.INVALID_CONFIG, "Disabling remote storage on a topic is not supported.")
    if not enable:
        return
    if not remote_available:
        raise KafkaError(ErrorCode.INVALID_CONFIG, REMOTE_NOT_CONFIGURED)
    for local_name, total_name in (("local.retention.ms", "retention.ms"), ("local.retention.bytes", "retention.bytes")):
        local = int(effective.get(local_name, "-2"))
        total = int(effective.get(total_name, "-1"))
        if total == -1 or local == -2:
            continue
        if local == -1:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Invalid value -1 for configuration {local_name}: Value must not be -1 as {total_name} value is set as {total}.")
        if local > total:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Invalid value {local} for configuration {local_name}: Value must not be more than {total_name} property value: {total}")


def _check_compaction_lags(configs: Mapping[str, str]) -> None:
    """Kafka's cross-check: min.compaction.lag.ms may not exceed max.compaction.lag.ms."""
    min_lag = int(configs.get("min.compaction.lag.ms", TOPIC_CONFIGS["min.compaction.lag.ms"].default))
    max_lag = int(configs.get("max.compaction.lag.ms", TOPIC_CONFIGS["max.compaction.lag.ms"].default))
    if min_lag > max_lag:
        raise KafkaError(
            ErrorCode.INVALID_CONFIG,
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})",
        )


def cleanup_policy(value: str) -> tuple[bool, bool]:
    """(delete, compact) flags of a cleanup.policy value ("delete", "compact", "compact,delete")."""
    parsed = TOPIC_CONFIGS["cleanup.policy"].parse(value)
    assert isinstance(parsed, list)
    return "delete" in parsed, "compact" in parsed


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    name: str
    value: str
    source: ConfigSource
    definition: ConfigDef


def effective_topic_configs(overrides: Mapping[str, str], broker_defaults: Mapping[str, str]) -> list[EffectiveConfig]:
    """Every topic config with its value and where it came from (topic override, broker
    setting, or Kafka's default)."""
    broker_by_topic = {BROKER_TO_TOPIC[k]: v for k, v in broker_defaults.items() if k in BROKER_TO_TOPIC}
    out = []
    for name, d in TOPIC_CONFIGS.items():
        if name in overrides:
            out.append(EffectiveConfig(name, overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG, d))
        elif name in broker_by_topic:
            out.append(EffectiveConfig(name, broker_by_topic[name], ConfigSource.STATIC_BROKER_CONFIG, d))
        else:
            out.append(EffectiveConfig(name, d.default, ConfigSource.DEFAULT_CONFIG, d))
    return out
