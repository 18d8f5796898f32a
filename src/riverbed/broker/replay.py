"""Reading an internal topic from its log start at start-up (``__consumer_offsets``,
``__transaction_state``): the batches of every partition in order, decoded, with unreadable
batches logged and skipped so that one bad batch never stops the broker from starting."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from riverbed.protocol.records.batch import BatchHeader, InvalidBatch, iter_batches
from riverbed.protocol.records.records import Record, decode_records

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("riverbed.broker")

_READ_BYTES = 1 << 20


def replay_batches(broker: Broker, topic: str, partitions: int) -> Iterator[tuple[int, BatchHeader, list[Record]]]:
    """(partition, batch header, records) of every readable batch of ``topic``, control
    batches included, partition by partition up to each high watermark."""
    for p in range(partitions):
        plog = broker.partition(topic, p)
        if plog is None:
            continue
        offset = plog.log_start_offset
        while offset < plog.high_watermark:
            data = plog.read(offset, _READ_BYTES).records
            if not data:
                break
            for header in iter_batches(data):
                offset = header.next_offset
                try:
                    records = decode_records(data, header.position)
                except InvalidBatch as exc:
                    log.error("%s-%d: skipping an unreadable batch: %s", topic, p, exc)
                    continue
                yield p, header, records
