"""DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44).

Topic configs are dynamic (stored with the topic). Broker configs (resource type BROKER, name
= the node id or "" for the cluster-wide default) are static or dynamic as Kafka classifies
them (riverbed.metadata.broker_configs); dynamic ones are applied at once and kept in the
data dir (riverbed.broker.dynamic_configs). DescribeConfigs reports Kafka's sources and
synonyms in Kafka's order of precedence.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from riverbed.metadata.broker_configs import (
    Synonym,
    config_type,
    is_dynamic,
    is_sensitive,
    listener_setting,
)
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

from ..share import GROUP_CONFIG_SOURCE, GROUP_CONFIGS

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("riverbed.configs")

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
GROUP = 32  # group configs (share groups: share_groups.py)
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
DC = DescribeConfigsResponse
TOPIC_TO_BROKER = {t: b for b, t in BROKER_TO_TOPIC.items()}


def _entry(
    name: str,
    value: str | None,
    synonyms: list[Synonym],
    ctype: ConfigType | None,
    include_synonyms: bool,
    *,
    read_only: bool = False,
    sensitive: bool = False,
) -> DC.DescribeConfigsResourceResult:
    """One config as Kafka describes it: the source is that of the first synonym (the one in
    force), DEFAULT_CONFIG when there is none."""
    source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
    return DC.DescribeConfigsResourceResult(
        name=name,
        value=None if sensitive else value,
        read_only=read_only,
        is_default=source == ConfigSource.DEFAULT_CONFIG,
        config_source=int(source),
        is_sensitive=sensitive,
        synonyms=[DC.DescribeConfigsSynonym(s.name, s.value, int(s.source)) for s in synonyms] if include_synonyms else [],
        config_type=int(ctype) if ctype is not None else int(ConfigType.UNKNOWN),
        documentation=None,
    )


def _wanted(keys: list[str] | None) -> set[str] | None:
    """configuration_keys: null or empty means every config (as Kafka reads it)."""
    return set(keys) if keys else None


def _describe_topic(broker: Broker, name: str, keys: set[str] | None, include_synonyms: bool, out: DC.DescribeConfigsResult) -> None:
    topic = broker.topics.get(name)
    if topic is None:
        out.error_code, out.error_message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic does not exist."
        return
    layers = broker.dynamic.layers()
    for c in effective_topic_configs(topic.configs, broker.log_defaults):
        if keys is not None and c.name not in keys:
            continue
        sensitive = c.definition.type == ConfigType.PASSWORD
        synonyms = []
        if c.name in topic.configs:
            synonyms.append(Synonym(c.name, None if sensitive else topic.configs[c.name], ConfigSource.DYNAMIC_TOPIC_CONFIG))
        bname = TOPIC_TO_BROKER.get(c.name)
        if bname is not None:
            synonyms += layers.synonyms(bname, sensitive)
        out.configs.append(_entry(c.name, c.value, synonyms, c.definition.type, include_synonyms, sensitive=sensitive))


def _describe_broker(broker: Broker, name: str, keys: set[str] | None, include_synonyms: bool, out: DC.DescribeConfigsResult) -> None:
    """A broker id: every setting (static, dynamic, default); "": the cluster-wide dynamic
    defaults only, with only their DYNAMIC_DEFAULT_BROKER_CONFIG synonyms (as Kafka)."""
    layers = broker.dynamic.layers()
    if name == "":
        names = sorted(layers.dynamic_default)
    else:
        try:
            node = int(name)
        except ValueError:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, but it is: {name}") from None
        if node != broker.config.node_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unexpected broker id, expected {broker.config.node_id} or empty string, but received {name}")
        names = sorted(
            {*BROKER_CONFIGS, *layers.dynamic_default, *layers.dynamic_broker}
            | {n for n in layers.static if listener_setting(n) is not None or n not in BROKER_CONFIGS}
        )
    for config in names:
        if keys is not None and config not in keys:
            continue
        synonyms = layers.synonyms(config)
        value: str | None
        if name == "":
            synonyms = [s for s in synonyms if s.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG]
            value = layers.dynamic_default[config]
        else:
            value = layers.value(config)
        out.configs.append(
            _entry(config, value, synonyms, config_type(config), include_synonyms, read_only=not is_dynamic(config), sensitive=is_sensitive(config))
        )


def _describe_group(broker: Broker, name: str, keys: set[str] | None, include_synonyms: bool, out: DC.DescribeConfigsResult) -> None:
    """A GROUP resource (share groups' configs, broker/share.py): GROUP_CONFIG when set."""
    for cname, value, default in broker.shares.group_configs(name):
        if keys is not None and cname not in keys:
            continue
        source = int(ConfigSource.DEFAULT_CONFIG) if default else GROUP_CONFIG_SOURCE
        synonyms = [DC.DescribeConfigsSynonym(cname, value, source)] if include_synonyms and not default else []
        ctype = int(GROUP_CONFIGS[cname].type)
        out.configs.append(DC.DescribeConfigsResourceResult(name=cname, value=value, read_only=False, is_default=default, config_source=source, is_sensitive=False, synonyms=synonyms, config_type=ctype, documentation=None))


def handle_describe_configs(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeConfigsRequest) -> DescribeConfigsResponse:
    results = []
    for res in req.resources:
        out = DC.DescribeConfigsResult(error_code=0, error_message=None, resource_type=res.resource_type, resource_name=res.resource_name, configs=[])
        results.append(out)
        keys = _wanted(res.configuration_keys)
        if not _may(broker, conn, AclOperation.DESCRIBE_CONFIGS, res.resource_type, res.resource_name):
            out.error_code = _denied(res.resource_type)
            continue
        try:
            if res.resource_type == TOPIC:
                _describe_topic(broker, res.resource_name, keys, req.include_synonyms, out)
            elif res.resource_type == BROKER:
                _describe_broker(broker, res.resource_name, keys, req.include_synonyms, out)
            elif res.resource_type == BROKER_LOGGER:
                continue
            elif res.resource_type == GROUP:
                _describe_group(broker, res.resource_name, keys, req.include_synonyms, out)
            else:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {res.resource_type}")
        except KafkaError as exc:
            out.configs = []
            out.error_code, out.error_message = int(exc.code), exc.message or None
            log.info("DescribeConfigs of %s %r refused: %s", res.resource_type, res.resource_name, exc.message)
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


def _may(broker: Broker, conn: ConnectionInfo, operation: AclOperation, resource_type: int, name: str) -> bool:
    """DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic, or on the cluster for broker configs."""
    if resource_type == TOPIC:
        return broker.authorize(conn, operation, ResourceType.TOPIC, name)
    if resource_type == GROUP:
        return broker.authorize(conn, operation, ResourceType.GROUP, name)
    return broker.authorize(conn, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def _denied(resource_type: int) -> int:
    if resource_type == GROUP:
        return ErrorCode.GROUP_AUTHORIZATION_FAILED
    return ErrorCode.TOPIC_AUTHORIZATION_FAILED if resource_type == TOPIC else ErrorCode.CLUSTER_AUTHORIZATION_FAILED


def _apply_topic(broker: Broker, rname: str, new: dict[str, str], validate_only: bool) -> None:
    if broker.topics.get(rname) is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic does not exist.")
    clean = validate_topic_configs(new)
    broker.check_tiering(clean, broker.topics.get(rname))
    if not validate_only:
        broker.set_topic_configs(rname, clean)


def _check_values(res_configs: list[tuple[str, int, str | None]]) -> None:
    """Kafka's first checks of one resource: no name twice, no null value but for DELETE."""
    names = [name for name, _op, _v in res_configs]
    if len(names) != len(set(names)):
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    nulls = [name for name, op, value in res_configs if value is None and op != DELETE]
    if nulls:
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls))


def _list_op(op: int, name: str, current: str, given: str | None) -> str:
    items = [x for x in current.split(",") if x]
    values = [x.strip() for x in (given or "").split(",") if x.strip()]
    if op == APPEND:
        items += [x for x in values if x not in items]
    else:
        items = [x for x in items if x not in values]
    return ",".join(items)


def _incremental(
    ops: list[tuple[str, int, str | None]], current: dict[str, str], current_values: dict[str, str], types: dict[str, ConfigType | None]
) -> dict[str, str]:
    """Apply SET / DELETE / APPEND / SUBTRACT to ``current`` (the stored settings); a LIST
    config absent from ``current`` is appended to / subtracted from ``current_values``."""
    new = dict(current)
    for name, op, value in ops:
        if op == SET:
            assert value is not None
            new[name] = value
        elif op == DELETE:
            new.pop(name, None)
        elif op in (APPEND, SUBTRACT):
            if name not in types:
                raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown config name: {name}")
            if types[name] != ConfigType.LIST:
                verb = "append" if op == APPEND else "subtract"
                raise KafkaError(ErrorCode.INVALID_CONFIG, f"Config value {verb} is not allowed for config key: {name}")
            new[name] = _list_op(op, name, new.get(name, current_values.get(name, "")), value)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown operations type {op}")
    return new


def _alter(broker: Broker, rtype: int, rname: str, ops: list[tuple[str, int, str | None]], validate_only: bool, incremental: bool) -> None:
    _check_values(ops)
    if rtype == TOPIC:
        topic = broker.topics.get(rname)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic does not exist.")
        if not incremental:
            _apply_topic(broker, rname, {n: v for n, _op, v in ops if v is not None}, validate_only)
            return
        for name, _op, _v in ops:
            if name not in TOPIC_CONFIGS:
                raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
        values = broker.topic_configs(topic)
        new = _incremental(ops, dict(topic.configs), values, {n: d.type for n, d in TOPIC_CONFIGS.items()})
        _apply_topic(broker, rname, new, validate_only)
    elif rtype == BROKER:
        level = rname
        stored = broker.dynamic.store.level(level if level == "" else str(broker.config.node_id))
        if incremental:
            # APPEND / SUBTRACT start from the level's value, else Kafka's default (as Kafka)
            defaults = broker.dynamic.layers().default
            start = {n: defaults.get(n, "") for n, _op, _v in ops}
            new = _incremental(ops, stored, start, {n: config_type(n) for n, _op, _v in ops if config_type(n) is not None})
        else:
            new = {n: v for n, _op, v in ops if v is not None}  # AlterConfigs replaces the level
        broker.dynamic.alter(level, new, validate_only)
    elif rtype == BROKER_LOGGER:
        raise KafkaError(ErrorCode.INVALID_CONFIG, "riverbed has no dynamic loggers")
    elif rtype == GROUP:
        stored = dict(broker.shares.configs.get(rname, {}))
        if incremental:
            types: dict[str, ConfigType | None] = {n: d.type for n, d in GROUP_CONFIGS.items()}
            new = _incremental(ops, stored, {n: GROUP_CONFIGS[n].default for n, _op, _v in ops if n in GROUP_CONFIGS}, types)
        else:
            new = {n: v for n, _op, v in ops if v is not None}
        broker.shares.alter_configs(rname, new, validate_only)
    else:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown resource type {rtype}")


def _repeated(resources: list[tuple[int, str]]) -> set[tuple[int, str]]:
    """Resources named more than once in one request (Kafka refuses each of them)."""
    seen: set[tuple[int, str]] = set()
    twice = set()
    for key in resources:
        if key in seen:
            twice.add(key)
        seen.add(key)
    return twice


REPEATED = "Each resource must appear at most once."


def handle_alter_configs(broker: Broker, conn: ConnectionInfo, version: int, req: AlterConfigsRequest) -> AlterConfigsResponse:
    R = AlterConfigsResponse.AlterConfigsResourceResponse
    out = []
    twice = _repeated([(res.resource_type, res.resource_name) for res in req.resources])
    for res in req.resources:
        r = R(error_code=0, error_message=None, resource_type=res.resource_type, resource_name=res.resource_name)
        out.append(r)
        if (res.resource_type, res.resource_name) in twice:
            r.error_code, r.error_message = int(ErrorCode.INVALID_REQUEST), REPEATED
            continue
        if not _may(broker, conn, AclOperation.ALTER_CONFIGS, res.resource_type, res.resource_name):
            r.error_code = _denied(res.resource_type)
            continue
        try:
            ops = [(c.name, SET, c.value) for c in res.configs]
            _alter(broker, res.resource_type, res.resource_name, ops, req.validate_only, incremental=False)
        except KafkaError as exc:
            r.error_code, r.error_message = int(exc.code), exc.message or None
            log.info("AlterConfigs of %s %r refused: %s", res.resource_type, res.resource_name, exc.message)
    return AlterConfigsResponse(throttle_time_ms=0, responses=out)


def handle_incremental_alter_configs(broker: Broker, conn: ConnectionInfo, version: int, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse:
    R = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse
    out = []
    twice = _repeated([(res.resource_type, res.resource_name) for res in req.resources])
    for res in req.resources:
        r = R(error_code=0, error_message=None, resource_type=res.resource_type, resource_name=res.resource_name)
        out.append(r)
        if (res.resource_type, res.resource_name) in twice:
            r.error_code, r.error_message = int(ErrorCode.INVALID_REQUEST), REPEATED
            continue
        if not _may(broker, conn, AclOperation.ALTER_CONFIGS, res.resource_type, res.resource_name):
            r.error_code = _denied(res.resource_type)
            continue
        try:
            ops = [(c.name, c.config_operation, c.value) for c in res.configs]
            _alter(broker, res.resource_type, res.resource_name, ops, req.validate_only, incremental=True)
        except KafkaError as exc:
            r.error_code, r.error_message = int(exc.code), exc.message or None
            log.info("IncrementalAlterConfigs of %s %r refused: %s", res.resource_type, res.resource_name, exc.message)
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=out)
