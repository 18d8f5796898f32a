"""riverbed's own requests, on the Kafka wire format but outside Kafka's API key space.

Kafka has no request for what ``riverbed topic describe`` shows about storage (local and
remote bytes and segments, the cleaner's dirty ratio and last clean): Kafka exposes those as
JMX metrics. riverbed answers one extra request for them, written by hand here in the same
style as the generated messages (flexible version 0: compact strings and arrays, tagged
fields). The broker does not list it in ApiVersions, so Kafka clients never see it; a tool
that sends it to a real Kafka broker gets the connection closed (unknown API key).

DescribeLogStats (key 30001, v0)
  request:  topics: [name: string, partitions: [int32]] | null (null: every partition)
  response: throttle_time_ms: int32,
            topics: [name: string, partitions: [partition: int32, error_code: int16,
                     log_start_offset: int64, local_log_start_offset: int64,
                     high_watermark: int64, local_bytes: int64, local_segments: int32,
                     remote_bytes: int64, remote_segments: int32, dirty_ratio: float64,
                     last_clean_ms: int64]]
  (-1 / NaN where a value does not apply: no remote storage, not a compacted topic)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.primitives import Message, Reader, Writer

DESCRIBE_LOG_STATS_KEY = 30001


@dataclass(slots=True)
class DescribeLogStatsRequest(Message):
    API_KEY: ClassVar[int] = DESCRIBE_LOG_STATS_KEY
    MIN_VERSION: ClassVar[int] = 0
    MAX_VERSION: ClassVar[int] = 0
    FLEXIBLE_VERSION: ClassVar[int] = 0

    @dataclass(slots=True)
    class Topic:
        name: str = ""
        partitions: list[int] = field(default_factory=list)

    topics: list[DescribeLogStatsRequest.Topic] | None = None

    @classmethod
    def read(cls, r: Reader, version: int) -> DescribeLogStatsRequest:
        n = r.array_length(True)
        topics: list[DescribeLogStatsRequest.Topic] | None = None
        if n >= 0:
            topics = []
            for _ in range(n):
                name = r.string(True)
                k = r.array_length(True)
                if k < 0:
                    raise DecodeError("null partition list")
                topics.append(cls.Topic(name, [r.int32() for _ in range(k)]))
                r.skip_tags()
        r.skip_tags()
        return cls(topics)

    def write(self, w: Writer, version: int) -> None:
        w.array_length(self.topics, True)
        for t in self.topics or []:
            w.string(t.name, True)
            w.array_length(t.partitions, True)
            for p in t.partitions:
                w.int32(p)
            w.uvarint(0)
        w.uvarint(0)


@dataclass(slots=True)
class PartitionStats:
    partition: int = 0
    error_code: int = 0
    log_start_offset: int = -1
    local_log_start_offset: int = -1
    high_watermark: int = -1
    local_bytes: int = -1
    local_segments: int = -1
    remote_bytes: int = -1
    remote_segments: int = -1
    dirty_ratio: float = math.nan
    last_clean_ms: int = -1


@dataclass(slots=True)
class DescribeLogStatsResponse(Message):
    API_KEY: ClassVar[int] = DESCRIBE_LOG_STATS_KEY
    MIN_VERSION: ClassVar[int] = 0
    MAX_VERSION: ClassVar[int] = 0
    FLEXIBLE_VERSION: ClassVar[int] = 0

    @dataclass(slots=True)
    class Topic:
        name: str = ""
        partitions: list[PartitionStats] = field(default_factory=list)

    throttle_time_ms: int = 0
    topics: list[DescribeLogStatsResponse.Topic] = field(default_factory=list)

    @classmethod
    def read(cls, r: Reader, version: int) -> DescribeLogStatsResponse:
        throttle = r.int32()
        topics = []
        for _ in range(max(r.array_length(True), 0)):
            name = r.string(True)
            parts = []
            for _ in range(max(r.array_length(True), 0)):
                parts.append(
                    PartitionStats(
                        r.int32(), r.int16(), r.int64(), r.int64(), r.int64(), r.int64(), r.int32(), r.int64(), r.int32(), r.float64(), r.int64()
                    )
                )
                r.skip_tags()
            topics.append(cls.Topic(name, parts))
            r.skip_tags()
        r.skip_tags()
        return cls(throttle, topics)

    def write(self, w: Writer, version: int) -> None:
        w.int32(self.throttle_time_ms)
        w.array_length(self.topics, True)
        for t in self.topics:
            w.string(t.name, True)
            w.array_length(t.partitions, True)
            for p in t.partitions:
                w.int32(p.partition)
                w.int16(p.error_code)
                w.int64(p.log_start_offset)
                w.int64(p.local_log_start_offset)
                w.int64(p.high_watermark)
                w.int64(p.local_bytes)
                w.int32(p.local_segments)
                w.int64(p.remote_bytes)
                w.int32(p.remote_segments)
                w.float64(p.dirty_ratio)
                w.int64(p.last_clean_ms)
                w.uvarint(0)
            w.uvarint(0)
        w.uvarint(0)


#: extension api key -> (request class, response class)
EXTENSIONS: dict[int, tuple[type[Message], type[Message]]] = {
    DESCRIBE_LOG_STATS_KEY: (DescribeLogStatsRequest, DescribeLogStatsResponse),
}

from .share_extension import (  # noqa: E402 - share groups' extension (KIP-932 in-flight state)
    DESCRIBE_SHARE_STATE_KEY,
    DescribeShareStateRequest,
    DescribeShareStateResponse,
)

EXTENSIONS[DESCRIBE_SHARE_STATE_KEY] = (DescribeShareStateRequest, DescribeShareStateResponse)
