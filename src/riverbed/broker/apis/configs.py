"""DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44).

Topic configs are dynamic (stored with the topic). Broker configs are static in riverbed
(set in the config file); altering them is refused with INVALID_CONFIG and a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverbed.metadata.configs import (
    BROKER_CONFIGS,
    BROKER_TO_TOPIC,
    TOPIC_CONFIGS,
    ConfigSource,
    ConfigType,
    effective_topic_configs,
    validate_topic_configs,
)
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.alter_configs import AlterConfigsRequest, AlterConfigsResponse
from riverbed.protocol.messages.describe_configs import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
)
from riverbed.protocol.messages.incremental_alter_configs import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
DC = DescribeConfigsResponse
TOPIC_TO_BROKER = {t: b for b, t in BROKER_TO_TOPIC.items()}


def _entry(name: str, value: str, source: ConfigSource, ctype: ConfigType, synonyms: list[DC.DescribeConfigsSynonym], read_only: bool = False) -> DC.DescribeConfigsResourceResult:
    return DC.DescribeConfigsResourceResult(
        name=name,
        value=value,
        read_only=read_only,
        is_default=source == ConfigSource.DEFAULT_CONFIG,
        config_source=int(source),
        is_sensitive=False,
        synonyms=synonyms,
        config_type=int(ctype),
        documentation=None,
    )


def _broker_settings(broker: Broker) -> list[tuple[str, str, ConfigSource, ConfigType]]:
    cfg = broker.config
    explicit = {
        "auto.create.topics.enable": str(cfg.auto_create_topics).lower(),
        "num.partitions": str(cfg.num_partitions),
        "delete.topic.enable": str(cfg.delete_topic_enable).lower(),
        "log.retention.check.interval.ms": str(cfg.retention_check_interval_ms),
        "socket.request.max.bytes": str(cfg.max_request_size),
        "connections.max.idle.ms": str(cfg.connections_max_idle_ms),
        "connection.failed.authentication.delay.ms": str(cfg.connection_failed_authentication_delay_ms),
        "group.initial.rebalance.delay.ms": str(cfg.group_initial_rebalance_delay_ms),
        "group.consumer.session.timeout.ms": str(cfg.consumer_session_timeout_ms),
        "group.consumer.heartbeat.interval.ms": str(cfg.consumer_heartbeat_interval_ms),
        **broker.log_defaults,
    }
    out = []
    for name, d in BROKER_CONFIGS.items():
        if name in explicit and explicit[name] != d.default:
            out.append((name, explicit[name], ConfigSource.STATIC_BROKER_CONFIG, d.type))
        else:
            out.append((name, d.default, ConfigSource.DEFAULT_CONFIG, d.type))
    return out


def _may(broker: Broker, conn: ConnectionInfo, operation: AclOperation, resource_type: int, name: str) -> bool:
    """DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic, or on the cluster for broker configs."""
    if resource_type == TOPIC:
        return broker.authorize(conn, operation, ResourceType.TOPIC, name)
    return broker.authorize(conn, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def _denied(resource_type: int) -> int:
    return ErrorCode.TOPIC_AUTHORIZATION_FAILED if resource_type == TOPIC else ErrorCode.CLUSTER_AUTHORIZATION_FAILED


def handle_describe_configs(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeConfigsRequest) -> DescribeConfigsResponse:
    results = []
    for res in req.resources:
        out = DC.DescribeConfigsResult(error_code=0, error_message=None, resource_type=res.resource_type, resource_name=res.resource_name, configs=[])
        results.append(out)
        keys = set(res.configuration_keys) if res.configuration_keys is not None else None
        if not _may(broker, conn, AclOperation.DESCRIBE_CONFIGS, res.resource_type, res.resource_name):
            out.error_code = _denied(res.resource_type)
            continue
        if res.resource_type == TOPIC:
            topic = broker.topics.get(res.resource_name)
            if topic is None:
                out.error_code, out.error_message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic does not exist."
                continue
            broker_values = {k: v for k, v in broker.log_defaults.items() if k in BROKER_TO_TOPIC}
            for c in effective_topic_configs(topic.configs, broker.log_defaults):
                if keys is not None and c.name not in keys:
                    continue
                synonyms = []
                if req.include_synonyms:
                    bname = TOPIC_TO_BROKER.get(c.name)
                    if c.name in topic.configs:
                        synonyms.append(DC.DescribeConfigsSynonym(c.name, topic.configs[c.name], int(ConfigSource.DYNAMIC_TOPIC_CONFIG)))
                    if bname is not None and bname in broker_values:
                        synonyms.append(DC.DescribeConfigsSynonym(bname, broker_values[bname], int(ConfigSource.STATIC_BROKER_CONFIG)))
                    if bname is not None:
                        synonyms.append(DC.DescribeConfigsSynonym(bname, c.definition.default, int(ConfigSource.DEFAULT_CONFIG)))
                out.configs.append(_entry(c.name, c.value, c.source, c.definition.type, synonyms))
        elif res.resource_type == BROKER:
            if res.resource_name not in ("", str(broker.config.node_id)):
                out.error_code, out.error_message = ErrorCode.INVALID_REQUEST, f"Unknown broker {res.resource_name}"
                continue
            for name, value, source, ctype in _broker_settings(broker):
                if keys is not None and name not in keys:
                    continue
                syn = [DC.DescribeConfigsSynonym(name, value, int(source))] if req.include_synonyms else []
                out.configs.append(_entry(name, value, source, ctype, syn, read_only=True))
        elif res.resource_type == BROKER_LOGGER:
            continue
        else:
            out.error_code, out.error_message = ErrorCode.INVALID_REQUEST, f"Unsupported resource type {res.resource_type}"
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


def _apply(broker: Broker, rtype: int, rname: str, new: dict[str, str] | None, validate_only: bool) -> None:
    if rtype in (BROKER, BROKER_LOGGER):
        raise KafkaError(ErrorCode.INVALID_CONFIG, "Broker configs are static in riverbed: set them in the config file")
    if rtype != TOPIC:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {rtype}")
    if broker.topics.get(rname) is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic does not exist.")
    assert new is not None
    clean = validate_topic_configs(new)
    broker.check_tiering(clean, broker.topics.get(rname))
    if not validate_only:
        broker.set_topic_configs(rname, clean)


def handle_alter_configs(broker: Broker, conn: ConnectionInfo, version: int, req: AlterConfigsRequest) -> AlterConfigsResponse:
    R = AlterConfigsResponse.AlterConfigsResourceResponse
    out = []
    for res in req.resources:
        r = R(error_code=0, error_message=None, resource_type=res.resource_type, resource_name=res.resource_name)
        out.append(r)
        if not _may(broker, conn, AclOperation.ALTER_CONFIGS, res.resource_type, res.resource_name):
            r.error_code = _denied(res.resource_type)
            continue
        try:
            new = {c.name: c.value for c in res.configs if c.value is not None}
            _apply(broker, res.resource_type, res.resource_name, new, req.validate_only)
        except KafkaError as exc:
            r.error_code, r.error_message = int(exc.code), exc.message or None
    return AlterConfigsResponse(throttle_time_ms=0, responses=out)


def handle_incremental_alter_configs(broker: Broker, conn: ConnectionInfo, version: int, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse:
    R = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse
    out = []
    for res in req.resources:
        r = R(error_code=0, error_message=None, resource_type=res.resource_type, resource_name=res.resource_name)
        out.append(r)
        if not _may(broker, conn, AclOperation.ALTER_CONFIGS, res.resource_type, res.resource_name):
            r.error_code = _denied(res.resource_type)
            continue
        try:
            if res.resource_type != TOPIC:
                _apply(broker, res.resource_type, res.resource_name, None, req.validate_only)
            topic = broker.topics.get(res.resource_name)
            if topic is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic does not exist.")
            current = {c.name: c.value for c in effective_topic_configs(topic.configs, broker.log_defaults)}
            new = dict(topic.configs)
            names = [c.name for c in res.configs]
            if len(names) != len(set(names)):
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate config keys in the request.")
            for c in res.configs:
                d = TOPIC_CONFIGS.get(c.name)
                if d is None:
                    raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {c.name}")
                if c.config_operation == SET:
                    if c.value is None:
                        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Null value not supported for {c.name}")
                    new[c.name] = c.value
                elif c.config_operation == DELETE:
                    new.pop(c.name, None)
                elif c.config_operation in (APPEND, SUBTRACT):
                    if d.type != ConfigType.LIST:
                        raise KafkaError(ErrorCode.INVALID_CONFIG, f"Config value append/subtract is not allowed for config key {c.name}")
                    items = [x for x in current[c.name].split(",") if x]
                    given = [x.strip() for x in (c.value or "").split(",") if x.strip()]
                    if c.config_operation == APPEND:
                        items += [x for x in given if x not in items]
                    else:
                        items = [x for x in items if x not in given]
                    new[c.name] = ",".join(items)
                else:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown config operation {c.config_operation}")
            _apply(broker, TOPIC, res.resource_name, new, req.validate_only)
        except KafkaError as exc:
            r.error_code, r.error_message = int(exc.code), exc.message or None
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=out)
