"""Topic administration: CreateTopics (19), DeleteTopics (20), DeleteRecords (21),
CreatePartitions (37)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from riverbed.metadata.configs import effective_topic_configs
from riverbed.metadata.topics import is_internal
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
)
from riverbed.protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from riverbed.protocol.messages.delete_records import DeleteRecordsRequest, DeleteRecordsResponse
from riverbed.protocol.messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from riverbed.protocol.primitives import ZERO_UUID
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

from ..broker import error_of
from .replication import check_assignment

if TYPE_CHECKING:
    from ..broker import Broker

CT = CreateTopicsResponse
log = logging.getLogger("riverbed.broker")


def _check_replication(broker: Broker, factor: int, assignments: list[list[int]]) -> None:
    if factor == 0 or factor < -1:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0, or -1 to use the default value.")
    if factor > 1 and not broker.config.accept_replication_factor:
        raise KafkaError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only 1 broker(s) are registered.",
        )
    for replicas in assignments:
        check_assignment(broker, replicas)


def handle_create_topics(broker: Broker, conn: ConnectionInfo, version: int, req: CreateTopicsRequest) -> CreateTopicsResponse:
    results = []
    seen: set[str] = set()
    for t in req.topics:
        res = CT.CreatableTopicResult(name=t.name, topic_id=ZERO_UUID, error_code=0, error_message=None, num_partitions=-1, replication_factor=-1)
        results.append(res)
        if t.name in seen:
            res.error_code, res.error_message = ErrorCode.INVALID_REQUEST, "Duplicate topic name."
            continue
        seen.add(t.name)
        if not (broker.authorize(conn, AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME) or broker.authorize(conn, AclOperation.CREATE, ResourceType.TOPIC, t.name)):
            res.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            continue
        try:
            _check_internal_name(broker, t.name)
            assignments = sorted(t.assignments, key=lambda a: a.partition_index)
            if assignments:
                if t.num_partitions != -1 or t.replication_factor != -1:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, "Both numPartitions or replicationFactor and replicasAssignments were set.")
                if [a.partition_index for a in assignments] != list(range(len(assignments))):
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Partitions must be numbered consecutively from 0.")
            _check_replication(broker, t.replication_factor, [a.broker_ids for a in assignments])
            partitions = len(assignments) if assignments else (t.num_partitions if t.num_partitions != -1 else broker.config.num_partitions)
            configs = {c.name: c.value for c in t.configs}
            if req.validate_only:
                broker.topics.check_create(t.name, partitions, configs)
                broker.check_tiering(configs)
                overrides = {k: v for k, v in configs.items() if v is not None}
                topic_id = ZERO_UUID
            else:
                topic = broker.create_topic(t.name, partitions, configs)
                overrides = topic.configs
                topic_id = topic.topic_id
                if t.replication_factor > 1:
                    log.warning(
                        "topic %s: replication factor %d asked for, created with 1 replica (riverbed.accept.replication.factor=true on a single node)",
                        t.name, t.replication_factor,
                    )
            res.topic_id = topic_id
            res.num_partitions = partitions
            res.replication_factor = 1
            if version >= 5:
                res.configs = [
                    CT.CreatableTopicConfigs(name=c.name, value=c.value, read_only=False, config_source=int(c.source), is_sensitive=False)
                    for c in effective_topic_configs(overrides, broker.log_defaults)
                ]
        except KafkaError as exc:
            res.error_code, res.error_message = int(exc.code), exc.message or None
            res.num_partitions = res.replication_factor = -1
    return CreateTopicsResponse(throttle_time_ms=0, topics=results)


def _check_internal_name(broker: Broker, name: str) -> None:
    """Clients do not create the internal topics: riverbed creates ``__consumer_offsets`` and
    ``__transaction_state`` on first use (FindCoordinator, Metadata), with its coordinators'
    partition counts; ``__cluster_metadata`` is refused with Kafka's message."""
    if name == "__cluster_metadata":
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Creation of internal topic __cluster_metadata is prohibited.")
    if is_internal(name):
        if broker.topics.get(name) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Creation of internal topic {name} is prohibited: the broker creates it on first use.")


def handle_delete_topics(broker: Broker, conn: ConnectionInfo, version: int, req: DeleteTopicsRequest) -> DeleteTopicsResponse:
    R = DeleteTopicsResponse.DeletableTopicResult
    wanted: list[tuple[str | None, object]] = []
    if version >= 6:
        wanted = [(t.name, t.topic_id) for t in req.topics]
    else:
        wanted = [(name, ZERO_UUID) for name in req.topic_names]
    out = []
    for name, topic_id in wanted:
        res = R(name=name, topic_id=topic_id, error_code=0)  # type: ignore[arg-type]
        out.append(res)
        resolved = name if name is not None else getattr(broker.topics.by_id(topic_id) if topic_id != ZERO_UUID else None, "name", None)  # type: ignore[arg-type]
        if resolved is not None and not broker.authorize(conn, AclOperation.DELETE, ResourceType.TOPIC, resolved):
            res.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            continue
        try:
            if not broker.config.delete_topic_enable:
                raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED, "Topic deletion is disabled.")
            if name is None:
                topic = broker.topics.by_id(topic_id) if topic_id != ZERO_UUID else None  # type: ignore[arg-type]
                if topic is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID.")
                name = res.name = topic.name
            existing = broker.topics.get(name)
            if existing is not None and existing.internal:
                raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Internal topics cannot be deleted")
            topic = broker.delete_topic(name)
            res.topic_id = topic.topic_id
        except KafkaError as exc:
            res.error_code, res.error_message = int(exc.code), exc.message or None
    return DeleteTopicsResponse(throttle_time_ms=0, responses=out)


def handle_create_partitions(broker: Broker, conn: ConnectionInfo, version: int, req: CreatePartitionsRequest) -> CreatePartitionsResponse:
    R = CreatePartitionsResponse.CreatePartitionsTopicResult
    out = []
    seen: set[str] = set()
    for t in req.topics:
        res = R(name=t.name, error_code=0)
        out.append(res)
        if not broker.authorize(conn, AclOperation.ALTER, ResourceType.TOPIC, t.name):
            res.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            continue
        try:
            if t.name in seen:
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic in request.")
            seen.add(t.name)
            topic = broker.topics.get(t.name)
            if topic is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
            if t.assignments is not None:
                if len(t.assignments) != t.count - topic.partitions:
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "Assignment count does not match the increase in partitions.")
                _check_replication(broker, -1, [a.broker_ids for a in t.assignments])
            broker.topics.add_partitions(t.name, t.count, validate_only=True)
            if not req.validate_only:
                broker.add_partitions(t.name, t.count)
        except KafkaError as exc:
            res.error_code, res.error_message = int(exc.code), exc.message or None
    return CreatePartitionsResponse(throttle_time_ms=0, results=out)


def handle_delete_records(broker: Broker, conn: ConnectionInfo, version: int, req: DeleteRecordsRequest) -> DeleteRecordsResponse:
    R = DeleteRecordsResponse
    topics_out = []
    for t in req.topics:
        parts: list[DeleteRecordsResponse.DeleteRecordsPartitionResult] = []
        topics_out.append(R.DeleteRecordsTopicResult(name=t.name, partitions=parts))
        for p in t.partitions:
            res = R.DeleteRecordsPartitionResult(partition_index=p.partition_index, low_watermark=-1, error_code=0)
            parts.append(res)
            if not broker.authorize(conn, AclOperation.DELETE, ResourceType.TOPIC, t.name):
                res.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            plog = broker.partition(t.name, p.partition_index)
            if plog is None:
                res.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if is_internal(t.name):  # as Kafka: the coordinators' state must stay whole
                res.error_code = ErrorCode.INVALID_TOPIC_EXCEPTION
                continue
            try:
                if p.offset < -1:
                    raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE, "offset below -1")
                res.low_watermark = plog.delete_records(p.offset)
            except Exception as exc:
                res.error_code, _ = error_of(exc)
    broker.notify()
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics_out)
