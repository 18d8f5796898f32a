"""riverbed.streams: stream processing in the manner of Kafka Streams.

A Kafka client library: it reaches the cluster only through confluent-kafka, so an application
developed against ``riverbed serve`` runs unchanged on Apache Kafka. See docs/streams.md.
"""

from .driver import TestDriver
from .dsl import (
    GlobalKTable,
    KGroupedStream,
    KGroupedTable,
    KStream,
    KTable,
    SessionWindowedKStream,
    StreamsApp,
    TimeWindowedKStream,
)
from .processor import Processor, ProcessorContext
from .records import LateRecord, Record, RecordInterceptor, StreamsError
from .serdes import (
    BYTES,
    FLOAT,
    JSON,
    LONG,
    STRING,
    BytesSerde,
    FloatSerde,
    JsonSerde,
    LongSerde,
    Serde,
    StringSerde,
    WindowedSerde,
)
from .topology import DeadLetterContext
from .windows import JoinWindows, SessionWindows, SlidingWindows, TimeWindows, Window, Windowed

__all__ = [
    "BYTES",
    "FLOAT",
    "JSON",
    "LONG",
    "STRING",
    "BytesSerde",
    "DeadLetterContext",
    "FloatSerde",
    "GlobalKTable",
    "JoinWindows",
    "JsonSerde",
    "KGroupedStream",
    "KGroupedTable",
    "KStream",
    "KTable",
    "LateRecord",
    "LongSerde",
    "Processor",
    "ProcessorContext",
    "Record",
    "RecordInterceptor",
    "Serde",
    "SessionWindowedKStream",
    "SessionWindows",
    "SlidingWindows",
    "StreamsApp",
    "StreamsError",
    "StringSerde",
    "TestDriver",
    "TimeWindowedKStream",
    "TimeWindows",
    "Window",
    "Windowed",
    "WindowedSerde",
]
