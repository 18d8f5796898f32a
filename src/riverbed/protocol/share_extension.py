"""DescribeShareState (riverbed extension key 30002, v0; see ``extensions.py`` for how the
extensions work): the in-flight state of a share group's share-partitions, which Kafka's
protocol does not expose (DescribeShareGroupOffsets has the start offset and lag only).
Used by ``riverbed share-group describe``.

  request:  group_id: string
  response: throttle_time_ms: int32, error_code: int16,
            partitions: [topic: string, partition: int32, start_offset: int64,
                         end_offset: int64, available: int32, acquired: int32,
                         acknowledged: int32, archived: int32]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from riverbed.protocol.primitives import Message, Reader, Writer

DESCRIBE_SHARE_STATE_KEY = 30002


@dataclass(slots=True)
class DescribeShareStateRequest(Message):
    API_KEY: ClassVar[int] = DESCRIBE_SHARE_STATE_KEY
    MIN_VERSION: ClassVar[int] = 0
    MAX_VERSION: ClassVar[int] = 0
    FLEXIBLE_VERSION: ClassVar[int] = 0

    group_id: str = ""

    @classmethod
    def read(cls, r: Reader, version: int) -> DescribeShareStateRequest:
        group = r.string(True)
        r.skip_tags()
        return cls(group)

    def write(self, w: Writer, version: int) -> None:
        w.string(self.group_id, True)
        w.uvarint(0)


@dataclass(slots=True)
class SharePartitionState:
    topic: str = ""
    partition: int = 0
    start_offset: int = -1
    end_offset: int = -1
    available: int = 0
    acquired: int = 0
    acknowledged: int = 0
    archived: int = 0


@dataclass(slots=True)
class DescribeShareStateResponse(Message):
    API_KEY: ClassVar[int] = DESCRIBE_SHARE_STATE_KEY
    MIN_VERSION: ClassVar[int] = 0
    MAX_VERSION: ClassVar[int] = 0
    FLEXIBLE_VERSION: ClassVar[int] = 0

    throttle_time_ms: int = 0
    error_code: int = 0
    partitions: list[SharePartitionState] = field(default_factory=list)

    @classmethod
    def read(cls, r: Reader, version: int) -> DescribeShareStateResponse:
        throttle, error = r.int32(), r.int16()
        parts = []
        for _ in range(max(r.array_length(True), 0)):
            parts.append(SharePartitionState(r.string(True), r.int32(), r.int64(), r.int64(), r.int32(), r.int32(), r.int32(), r.int32()))
            r.skip_tags()
        r.skip_tags()
        return cls(throttle, error, parts)

    def write(self, w: Writer, version: int) -> None:
        w.int32(self.throttle_time_ms)
        w.int16(self.error_code)
        w.array_length(self.partitions, True)
        for p in self.partitions:
            w.string(p.topic, True)
            w.int32(p.partition)
            w.int64(p.start_offset)
            w.int64(p.end_offset)
            for n in (p.available, p.acquired, p.acknowledged, p.archived):
                w.int32(n)
            w.uvarint(0)
        w.uvarint(0)
