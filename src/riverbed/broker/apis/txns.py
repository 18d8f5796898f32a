"""Transactions: InitProducerId (transactional ids), AddPartitionsToTxn (24), AddOffsetsToTxn
(25), EndTxn (26), TxnOffsetCommit (28), DescribeProducers (61), DescribeTransactions (65),
ListTransactions (66).

The coordinator decides (``coordinator/txn.py``); ``broker/txns.py`` writes what it asks for.
Answers that changed state wait until the records are durable. KIP-588: requests older than
InitProducerId v4, AddPartitionsToTxn v2, AddOffsetsToTxn v2, EndTxn v2 and TxnOffsetCommit
v3 get INVALID_PRODUCER_EPOCH where newer ones get PRODUCER_FENCED.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from riverbed.coordinator.group_types import OffsetAndMetadata
from riverbed.coordinator.offsets_log import OFFSETS_TOPIC, partition_for
from riverbed.coordinator.txn_types import TxnState
from riverbed.coordinator.write_errors import offset_commit_write_error
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.add_offsets_to_txn import (
    AddOffsetsToTxnRequest,
    AddOffsetsToTxnResponse,
)
from riverbed.protocol.messages.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
)
from riverbed.protocol.messages.describe_producers import (
    DescribeProducersRequest,
    DescribeProducersResponse,
)
from riverbed.protocol.messages.describe_transactions import (
    DescribeTransactionsRequest,
    DescribeTransactionsResponse,
)
from riverbed.protocol.messages.end_txn import EndTxnRequest, EndTxnResponse
from riverbed.protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from riverbed.protocol.messages.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
)
from riverbed.protocol.messages.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
)
from riverbed.protocol.primitives import Message
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

from ..txns import Outcome

if TYPE_CHECKING:
    from ..broker import Broker

M = TypeVar("M", bound=Message)


def _fenced(code: int, version: int, first_fenced_version: int) -> int:
    """PRODUCER_FENCED for clients that know it, INVALID_PRODUCER_EPOCH for older ones."""
    if code == ErrorCode.PRODUCER_FENCED and version < first_fenced_version:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def _when_durable(broker: Broker, outcome: Outcome, resp: M) -> M | asyncio.Future[M]:
    if not outcome.pending and not outcome.tasks:
        return resp
    return asyncio.ensure_future(_wait(broker, outcome, resp))


async def _wait(broker: Broker, outcome: Outcome, resp: M) -> M:
    await broker.txns.settle(outcome)
    return resp



def init_transactional_producer(broker: Broker, conn: ConnectionInfo, version: int, req: InitProducerIdRequest) -> InitProducerIdResponse | asyncio.Future[InitProducerIdResponse]:
    txn_id = req.transactional_id
    assert txn_id is not None
    if not broker.authorize(conn, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1)
    pid, epoch = (req.producer_id, req.producer_epoch) if version >= 3 else (-1, -1)
    result, outcome = broker.txns.call(txn_id, lambda: broker.txns.coordinator.init_producer_id(txn_id, req.transaction_timeout_ms, pid, epoch))
    error = outcome.error or _fenced(result.error_code, version, 4)
    if error:
        return InitProducerIdResponse(throttle_time_ms=0, error_code=error, producer_id=-1, producer_epoch=-1)
    resp = InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=result.producer_id, producer_epoch=result.producer_epoch)
    return _when_durable(broker, outcome, resp)


def handle_add_partitions_to_txn(broker: Broker, conn: ConnectionInfo, version: int, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse | asyncio.Future[AddPartitionsToTxnResponse]:
    R = AddPartitionsToTxnResponse
    wanted = [(t.name, p) for t in req.v3_and_below_topics for p in t.partitions]
    errors: dict[tuple[str, int], int] = {}
    txn_denied = not broker.authorize(conn, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, req.v3_and_below_transactional_id)
    for name, p in wanted:
        topic = broker.topics.get(name)
        if txn_denied:
            errors[(name, p)] = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        elif not broker.authorize(conn, AclOperation.WRITE, ResourceType.TOPIC, name):
            errors[(name, p)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        elif topic is None or not 0 <= p < topic.partitions:
            errors[(name, p)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        elif topic.internal:
            errors[(name, p)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    outcome = Outcome([], [], ErrorCode.NONE)
    if errors:  # as Kafka: nothing is added, the valid partitions are "not attempted"
        for key in wanted:
            errors.setdefault(key, ErrorCode.OPERATION_NOT_ATTEMPTED)
    else:
        tid = req.v3_and_below_transactional_id
        code, outcome = broker.txns.call(tid, lambda: broker.txns.coordinator.add_partitions(tid, req.v3_and_below_producer_id, req.v3_and_below_producer_epoch, wanted), defer_flush=True)
        code = outcome.error or _fenced(code, version, 2)
        errors = {key: code for key in wanted}
        if not code and not outcome.tasks and outcome.pending:
            # answered before the Ongoing record is durable, nor flushed yet: the
            # transaction's records wait for it instead and their produce asks for its
            # flush (handle_produce), so one flush cycle covers the record and the batches
            broker.txns.state_written(tid, outcome.pending[-1])
            outcome = Outcome([], [], ErrorCode.NONE)
        else:
            broker.txns.flush_now(outcome.pending)
    by_topic: dict[str, list[AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult]] = {}
    for (name, p), code in errors.items():
        by_topic.setdefault(name, []).append(R.AddPartitionsToTxnPartitionResult(partition_index=p, partition_error_code=code))
    resp = R(throttle_time_ms=0, results_by_topic_v3_and_below=[R.AddPartitionsToTxnTopicResult(name=n, results_by_partition=ps) for n, ps in by_topic.items()])
    return _when_durable(broker, outcome, resp)


def handle_add_offsets_to_txn(broker: Broker, conn: ConnectionInfo, version: int, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse | asyncio.Future[AddOffsetsToTxnResponse]:
    if not req.group_id:
        return AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=ErrorCode.INVALID_GROUP_ID)
    broker.groups.offsets_log(req.group_id)  # the markers need the partition to exist
    target = (OFFSETS_TOPIC, partition_for(req.group_id, broker.groups.partitions))
    code, outcome = broker.txns.call(req.transactional_id, lambda: broker.txns.coordinator.add_offsets(req.transactional_id, req.producer_id, req.producer_epoch, target))
    code = outcome.error or _fenced(code, version, 2)
    return _when_durable(broker, outcome, AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=code))


def handle_end_txn(broker: Broker, conn: ConnectionInfo, version: int, req: EndTxnRequest) -> EndTxnResponse | asyncio.Future[EndTxnResponse]:
    code, outcome = broker.txns.call(req.transactional_id, lambda: broker.txns.coordinator.end_txn(req.transactional_id, req.producer_id, req.producer_epoch, req.committed))
    code = outcome.error or _fenced(code, version, 2)
    return _when_durable(broker, outcome, EndTxnResponse(throttle_time_ms=0, error_code=code))


def handle_txn_offset_commit(broker: Broker, conn: ConnectionInfo, version: int, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse | asyncio.Future[TxnOffsetCommitResponse]:
    R = TxnOffsetCommitResponse
    errors: dict[tuple[str, int], int] = {}
    wanted: list[tuple[str, int, OffsetAndMetadata]] = []
    now = broker.now_ms()
    max_metadata = broker.groups.coordinator.config.max_metadata_size
    whole: int = ErrorCode.NONE
    if not broker.authorize(conn, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id):
        whole = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not broker.authorize(conn, AclOperation.READ, ResourceType.GROUP, req.group_id):
        whole = ErrorCode.GROUP_AUTHORIZATION_FAILED
    for t in req.topics:
        topic = broker.topics.get(t.name)
        for p in t.partitions:
            if whole:
                errors[(t.name, p.partition_index)] = whole
            elif not broker.authorize(conn, AclOperation.READ, ResourceType.TOPIC, t.name):
                errors[(t.name, p.partition_index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or not 0 <= p.partition_index < topic.partitions:
                errors[(t.name, p.partition_index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif len(p.committed_metadata or "") > max_metadata:
                errors[(t.name, p.partition_index)] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                epoch = p.committed_leader_epoch if version >= 2 else -1
                wanted.append((t.name, p.partition_index, OffsetAndMetadata(p.committed_offset, epoch, p.committed_metadata or "", now)))
    member = req.member_id if version >= 3 else ""
    generation = req.generation_id if version >= 3 else -1
    instance = req.group_instance_id if version >= 3 else None
    code: int = ErrorCode.NONE
    if not req.group_id:
        code = ErrorCode.INVALID_GROUP_ID
    elif verify := _verify_txn_offsets(broker, req):
        code = _fenced(verify, version, 3)
    elif broker.groups.consumer.has_group(req.group_id):
        if member or generation >= 0:
            code = broker.groups.consumer.commit_allowed(req.group_id, member, generation, 9)
            if code == ErrorCode.STALE_MEMBER_EPOCH:  # TxnOffsetCommit has no such error
                code = ErrorCode.ILLEGAL_GENERATION
    else:
        code = broker.groups.coordinator.txn_commit_error(req.group_id, member, instance, generation)
    if not code and wanted:
        try:
            broker.groups.txn_commit(req.group_id, req.producer_id, req.producer_epoch, wanted)
        except KafkaError as exc:
            # a fenced producer keeps its error; a refused write (disk full) is mapped as
            # Kafka maps a failed offset commit (NOT_COORDINATOR), nothing was changed
            code = offset_commit_write_error(exc.code)
            if code == ErrorCode.INVALID_PRODUCER_EPOCH and version >= 3:
                code = ErrorCode.PRODUCER_FENCED
    for name, index, _ in wanted:
        errors[(name, index)] = code
    broker.groups.reschedule()
    resp = R(
        throttle_time_ms=0,
        topics=[R.TxnOffsetCommitResponseTopic(name=t.name, partitions=[R.TxnOffsetCommitResponsePartition(p.partition_index, errors.get((t.name, p.partition_index), 0)) for p in t.partitions]) for t in req.topics],
    )
    if code or not wanted:
        return resp
    return asyncio.ensure_future(_group_durable(broker, req.group_id, resp))


def _verify_txn_offsets(broker: Broker, req: TxnOffsetCommitRequest) -> int:
    """The transaction coordinator's view (KIP-890 verification, which Kafka 3.6+ does for
    TxnOffsetCommit): the producer must own the transactional id at this epoch, and the
    group's partition must be in its ongoing transaction (AddOffsetsToTxn first). Without
    this, offsets of a transaction that never ends would stay pending for ever."""
    snap = broker.txns.coordinator.snapshot(req.transactional_id)
    if snap is None or snap.producer_id != req.producer_id:
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
    if snap.producer_epoch != req.producer_epoch:
        return ErrorCode.PRODUCER_FENCED
    target = (OFFSETS_TOPIC, partition_for(req.group_id, broker.groups.partitions))
    if snap.state != TxnState.ONGOING or target not in snap.partitions:
        return ErrorCode.INVALID_TXN_STATE
    return ErrorCode.NONE


async def _group_durable(broker: Broker, group_id: str, resp: TxnOffsetCommitResponse) -> TxnOffsetCommitResponse:
    await broker.groups.durable(group_id)
    return resp


# ---------------------------------------------------------------------------- admin


def handle_describe_producers(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeProducersRequest) -> DescribeProducersResponse:
    R = DescribeProducersResponse
    topics = []
    for t in req.topics:
        parts = []
        readable = broker.authorize(conn, AclOperation.READ, ResourceType.TOPIC, t.name)
        for idx in t.partition_indexes:
            plog = broker.partition(t.name, idx)
            if not readable:
                parts.append(R.PartitionResponse(partition_index=idx, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                continue
            if plog is None:
                parts.append(R.PartitionResponse(partition_index=idx, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            producers = [
                R.ProducerState(
                    producer_id=s.producer_id,
                    producer_epoch=s.producer_epoch,
                    last_sequence=s.last_sequence,
                    last_timestamp=s.last_timestamp,
                    coordinator_epoch=s.coordinator_epoch,
                    current_txn_start_offset=s.current_txn_start_offset,
                )
                for s in plog.producer_states()
            ]
            parts.append(R.PartitionResponse(partition_index=idx, error_code=0, active_producers=producers))
        topics.append(R.TopicResponse(name=t.name, partitions=parts))
    return R(throttle_time_ms=0, topics=topics)


def handle_describe_transactions(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse:
    R = DescribeTransactionsResponse
    states = []
    for d in broker.txns.coordinator.describe(list(req.transactional_ids)):
        if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, d.transactional_id):
            states.append(R.TransactionState(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, transactional_id=d.transactional_id, transaction_state="", transaction_timeout_ms=0, transaction_start_time_ms=-1, producer_id=-1, producer_epoch=-1))
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(d.partitions):
            if broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TOPIC, topic):  # Kafka leaves the others out
                by_topic.setdefault(topic, []).append(partition)
        states.append(
            R.TransactionState(
                error_code=d.error_code,
                transactional_id=d.transactional_id,
                transaction_state=d.state,
                transaction_timeout_ms=d.timeout_ms,
                transaction_start_time_ms=d.start_ms,
                producer_id=d.producer_id,
                producer_epoch=d.producer_epoch,
                topics=[R.TopicData(topic=n, partitions=ps) for n, ps in by_topic.items()],
            )
        )
    return R(throttle_time_ms=0, transaction_states=states)


def handle_list_transactions(broker: Broker, conn: ConnectionInfo, version: int, req: ListTransactionsRequest) -> ListTransactionsResponse:
    R = ListTransactionsResponse
    duration = req.duration_filter if version >= 1 else -1
    unknown, entries = broker.txns.coordinator.list(list(req.state_filters), list(req.producer_id_filters), duration)
    return R(
        throttle_time_ms=0,
        error_code=0,
        unknown_state_filters=list(unknown),
        transaction_states=[
            R.TransactionState(transactional_id=e.transactional_id, producer_id=e.producer_id, transaction_state=e.state)
            for e in entries
            if broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, e.transactional_id)
        ],
    )
