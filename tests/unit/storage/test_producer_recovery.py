"""Idempotent-producer state lives with the log: duplicates are refused by the log, and the
state survives clean restarts (snapshot) and crashes (snapshot at roll + replay)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.records import build_batch
from riverbed.storage.api import LogConfig
from riverbed.storage.manager import LogManager

SMALL = LogConfig(segment_bytes=400)


def batch(seq: int, count: int = 2, pid: int = 42, epoch: int = 0) -> bytearray:
    return build_batch([(None, b"v" * 20)] * count, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


@pytest.mark.parametrize("crash", [False, True])
def test_dedupe_survives_restart(manager_factory: Callable[..., LogManager], crash: bool) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    offsets = [log.append(batch(2 * i), now_ms=1000).base_offset for i in range(10)]
    assert len(log.segment_base_offsets()) > 1  # rolled at least once
    dup = log.append(batch(18), now_ms=1000)
    assert dup.base_offset == offsets[9]  # a retry of the last batch: original offsets back
    assert log.log_end_offset == 20
    manager.flush_all()
    if crash:
        manager.abandon()
    else:
        manager.close()
    again = manager_factory(default_config=SMALL).get("t", 0)
    assert again is not None
    assert again.append(batch(16), now_ms=1000).base_offset == offsets[8]
    assert again.log_end_offset == 20
    with pytest.raises(KafkaError) as gap:
        again.append(batch(30), now_ms=1000)
    assert gap.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert again.append(batch(20), now_ms=1000).base_offset == 20


def test_truncation_forgets_producer_batches(manager_factory: Callable[..., LogManager]) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, LogConfig())
    log.append(batch(0), now_ms=1)
    log.append(batch(2), now_ms=1)
    log.truncate_to(2)
    # the second batch is gone: its retry is a new append, not a duplicate
    assert log.append(batch(2), now_ms=1).base_offset == 2
    assert log.log_end_offset == 4
