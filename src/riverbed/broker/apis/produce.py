"""Produce (key 0).

The hot path: validate the one batch per partition (header, CRC, sizes, record count),
append the same bytes (the base offset is patched in place in the request buffer), and
answer. acks=0 sends nothing back; acks=1 answers after the write to the page cache;
acks=-1 answers once the group-committed fsync covering the batch is done (when the
topic's flush.messages is 1, the default).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from riverbed.coordinator.txn_log import TRANSACTION_STATE_TOPIC
from riverbed.coordinator.txn_types import TxnState
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.produce import ProduceRequest, ProduceResponse
from riverbed.protocol.records.batch import BatchHeader, InvalidBatch, set_partition_leader_epoch
from riverbed.protocol.records.validation import RecordValidationError, validate_produce_records
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import CloseConnection, ConnectionInfo
from riverbed.storage.api import PartitionLog

from ..schema_ids import check_records, topic_rules

if TYPE_CHECKING:
    from ..broker import Broker

Resp = ProduceResponse
logger = logging.getLogger(__name__)
_LONG_MAX = (1 << 63) - 1
PartResp = ProduceResponse.PartitionProduceResponse


def _error(index: int, code: int, message: str | None = None) -> PartResp:
    return PartResp(index=index, error_code=code, base_offset=-1, log_append_time_ms=-1, log_start_offset=-1, error_message=message)


def _min_isr(broker: Broker, overrides: dict[str, str]) -> int:
    return int(overrides.get("min.insync.replicas") or broker.log_defaults.get("min.insync.replicas", "1"))


def _record_errors(index: int, exc: RecordValidationError) -> PartResp:
    """KIP-467: the partition fails with the exception's code and message, and lists the
    records that caused it (batch index + message), so that a client fails exactly those
    records and retries the others (Produce v8+ carries both fields; older versions drop
    them when encoding)."""
    logger.info("produce refused (partition %d): %s", index, exc)
    resp = _error(index, exc.code, str(exc))
    resp.record_errors = [Resp.BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m) for i, m in exc.record_errors]
    return resp


def _unverified_txn_batch(broker: Broker, transactional_id: str | None, topic: str, partition: int, header: BatchHeader) -> tuple[int, str] | None:
    """KIP-890 part 1: a transactional batch is accepted only for a partition that its
    producer added to its ongoing transaction (AddPartitionsToTxn), so no batch can open a
    transaction on a partition that the coordinator would never write a marker to (a
    hanging transaction that blocks read_committed consumers). The coordinator is local:
    its state is checked directly (Kafka's partition leader asks the coordinator with
    AddPartitionsToTxn v4 verifyOnly). Returns (error code, message) or None when fine."""
    if not header.is_transactional or header.producer_id < 0:
        return None
    if transactional_id is None:  # Kafka: transactional records need a transactional id
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional records without a transactional id"
    cur = broker.txns.coordinator.snapshot(transactional_id)
    if cur is not None and cur.producer_id == header.producer_id and header.producer_epoch < cur.producer_epoch:
        return None  # a fenced producer: the log's epoch check answers as before
    if cur is None or cur.producer_id != header.producer_id or cur.state != TxnState.ONGOING or (topic, partition) not in cur.partitions:
        logger.info("produce refused: %s-%d not in an ongoing transaction of %r (producer %d)", topic, partition, transactional_id, header.producer_id)
        return ErrorCode.INVALID_TXN_STATE, "Partition was not added to the transaction"
    return None


def _timestamp_bounds(broker: Broker, configs: dict[str, str]) -> tuple[int | None, int | None]:
    """message.timestamp.before.max.ms / after.max.ms of a CreateTime topic (the topic's
    setting, else a broker-wide log.message.timestamp.* default once the broker config
    accepts one): None where unbounded (the default), so the hot path does not decode
    records for nothing."""
    out: list[int | None] = []
    for name in ("message.timestamp.before.max.ms", "message.timestamp.after.max.ms"):
        raw = configs.get(name, broker.log_defaults.get(f"log.{name}"))
        try:
            value = None if raw is None else int(raw)
        except ValueError:
            value = None
        out.append(None if value is None or value >= _LONG_MAX else value)
    return out[0], out[1]


def handle_produce(broker: Broker, conn: ConnectionInfo, version: int, req: ProduceRequest) -> ProduceResponse | asyncio.Future[ProduceResponse | None] | None:
    if req.transactional_id is None:
        return _produce(broker, conn, version, req)
    # the flush requests of the transaction's Ongoing state record and of the batches reach
    # the flusher together: one cycle covers them (a flusher that woke at the first request
    # took a second cycle for the rest about every other transaction)
    with broker.logs.gather_flushes():
        return _produce(broker, conn, version, req)


def _produce(broker: Broker, conn: ConnectionInfo, version: int, req: ProduceRequest) -> ProduceResponse | asyncio.Future[ProduceResponse | None] | None:
    acks = req.acks
    responses: list[Resp.TopicProduceResponse] = []
    waits: list[tuple[PartitionLog, int]] = []
    now = broker.now_ms()
    txn_denied = req.transactional_id is not None and not broker.authorize(conn, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id)
    if req.transactional_id is not None and not txn_denied:
        # before the batches are appended: the Ongoing state record of the transaction,
        # if not durable yet, joins the flush cycle that their appends ask for
        broker.txns.unsynced_state(req.transactional_id)
    for td in req.topic_data:
        parts: list[PartResp] = []
        if txn_denied:  # Kafka fails the whole request's partitions
            responses.append(Resp.TopicProduceResponse(name=td.name, partition_responses=[_error(pd.index, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED) for pd in td.partition_data]))
            continue
        responses.append(Resp.TopicProduceResponse(name=td.name, partition_responses=parts))
        topic = broker.topics.get(td.name)
        for pd in td.partition_data:
            if version < 3:
                parts.append(_error(pd.index, ErrorCode.UNSUPPORTED_VERSION, "Produce v0-2 (message format v0/v1) is not supported"))
                continue
            if acks not in (0, 1, -1):
                parts.append(_error(pd.index, ErrorCode.INVALID_REQUIRED_ACKS))
                continue
            if not broker.authorize(conn, AclOperation.WRITE, ResourceType.TOPIC, td.name):
                # before any existence check: an unauthorized client learns nothing (Kafka)
                parts.append(_error(pd.index, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                continue
            plog = broker.partition(td.name, pd.index) if topic is not None else None
            if plog is None or topic is None:
                parts.append(_error(pd.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            if topic.internal:
                parts.append(_error(pd.index, ErrorCode.INVALID_TOPIC_EXCEPTION, "Cannot append to internal topic"))
                continue
            if acks == -1 and not broker.config.accept_replication_factor and _min_isr(broker, topic.configs) > 1:
                # one replica in sync: Kafka refuses acks=all below min.insync.replicas
                parts.append(_error(pd.index, ErrorCode.NOT_ENOUGH_REPLICAS, f"The size of the current ISR (1) is insufficient to satisfy the min.isr requirement of {_min_isr(broker, topic.configs)} for partition {td.name}-{pd.index}"))
                continue
            records = pd.records
            if records is None or len(records) == 0:
                parts.append(_error(pd.index, ErrorCode.INVALID_RECORD, "Produce request with no records"))
                continue
            configs = topic.configs
            log_append_time = configs.get("message.timestamp.type", broker.log_defaults.get("log.message.timestamp.type")) == "LogAppendTime"
            before_ms, after_ms = (None, None) if log_append_time else _timestamp_bounds(broker, configs)
            try:
                header = validate_produce_records(
                    records,  # type: ignore[arg-type]
                    max_message_bytes=plog.config.max_message_bytes,
                    zstd_allowed=version >= 7,
                    require_keys="compact" in configs.get("cleanup.policy", broker.log_defaults.get("log.cleanup.policy", "delete")),
                    now_ms=now,
                    timestamp_before_max_ms=before_ms,
                    timestamp_after_max_ms=after_ms,
                )
                unverified = _unverified_txn_batch(broker, req.transactional_id, td.name, pd.index, header)
                if unverified is not None:
                    parts.append(_error(pd.index, unverified[0], unverified[1]))
                    continue
                schema_rules = topic_rules(configs)
                if schema_rules:  # schema ids checked at produce time (docs/registry.md)
                    check_records(broker.schema_ids, td.name, schema_rules, records)
                # riverbed has no leader epochs: -1 tells consumers not to validate offsets
                # with OffsetForLeaderEpoch (Kafka stamps the leader's epoch here)
                set_partition_leader_epoch(records, -1)  # type: ignore[arg-type]
                info = plog.append(
                    records,  # type: ignore[arg-type]
                    now_ms=now,
                    log_append_time=log_append_time,
                )
                broker.stats.produced(td.name, header.records_count, len(records))
            except RecordValidationError as exc:
                parts.append(_record_errors(pd.index, exc))
                continue
            except InvalidBatch as exc:
                parts.append(_error(pd.index, ErrorCode.CORRUPT_MESSAGE if exc.corrupt else ErrorCode.INVALID_RECORD, str(exc)))
                continue
            except KafkaError as exc:
                parts.append(_error(pd.index, exc.code, exc.message or None))
                continue
            parts.append(
                PartResp(
                    index=pd.index,
                    error_code=0,
                    base_offset=info.base_offset,
                    log_append_time_ms=info.log_append_time,
                    log_start_offset=info.log_start_offset,
                )
            )
            waits.append((plog, info.last_offset))
            if header.is_transactional and req.transactional_id is not None:
                # AddPartitionsToTxn answers before its Ongoing record is durable; the
                # records of the transaction are acknowledged only once it is, so no
                # acknowledged record ever belongs to a transaction the coordinator could
                # forget in a power cut (docs/transactions.md, "Durability")
                state = broker.txns.unsynced_state(req.transactional_id)
                if state is not None:
                    waits.append(state)
    broker.notify()  # wake fetchers (visible at once when not waiting for fsync)
    if acks == 0:
        if any(pr.error_code for t in responses for pr in t.partition_responses):
            # no response to carry the error: Kafka closes the connection so the client notices
            raise CloseConnection("acks=0 produce failed")
        return None
    resp = ProduceResponse(responses=responses, throttle_time_ms=0)
    if acks == 1 or not waits:
        return resp
    pending = [(plog, last) for plog, last in waits if plog.high_watermark <= last]
    if not pending:
        return resp
    return _await_durable(broker, resp, pending, req.timeout_ms)


def _await_durable(broker: Broker, resp: ProduceResponse, pending: list[tuple[PartitionLog, int]], timeout_ms: int) -> asyncio.Future[ProduceResponse | None]:
    """The answer once every appended partition is durable (or failed), or at the request's
    timeout. Callbacks on futures, not a task per request: this is the produce hot path."""
    loop = broker.loop
    assert loop is not None
    out: asyncio.Future[ProduceResponse | None] = loop.create_future()
    # a log that fails (fsync) meanwhile ends the wait too: answered KAFKA_STORAGE_ERROR
    durable = broker.wait_until(lambda: all(plog.high_watermark > last or plog.failed is not None for plog, last in pending))
    if durable.done():
        out.set_result(_answer(resp, pending))
        return out
    timer = loop.call_later(max(timeout_ms, 1) / 1000, durable.cancel)  # the timeout ends the wait

    def on_durable(f: asyncio.Future[None]) -> None:
        timer.cancel()
        if out.done():  # the connection went away
            return
        exc = None if f.cancelled() else f.exception()
        if exc is not None:
            out.set_exception(exc)
        else:
            out.set_result(_answer(resp, pending))

    durable.add_done_callback(on_durable)
    out.add_done_callback(lambda o: durable.cancel() if o.cancelled() else None)
    return out


def _answer(resp: ProduceResponse, pending: list[tuple[PartitionLog, int]]) -> ProduceResponse:
    late = {(p.topic, p.partition): p.failed for p, last in pending if p.high_watermark <= last}
    if not late:
        return resp
    # a transaction's state record that is not durable fails every partition of the request
    state = [failed for (topic, _), failed in late.items() if topic == TRANSACTION_STATE_TOPIC]
    for t in resp.responses:
        for pr in t.partition_responses:
            if pr.error_code:
                continue
            if (t.name, pr.index) in late or state:
                failed = late[(t.name, pr.index)] if (t.name, pr.index) in late else state[0]
                if failed is None:
                    pr.error_code = ErrorCode.REQUEST_TIMED_OUT
                else:
                    pr.error_code, pr.error_message = ErrorCode.KAFKA_STORAGE_ERROR, failed
                    pr.base_offset = pr.log_append_time_ms = pr.log_start_offset = -1
    return resp
