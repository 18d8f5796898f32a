"""The message browser: read a bounded window of a topic with a plain (group-less) consumer,
decode, filter. Every parameter comes from the query string, so a filtered view is a URL to
share or bookmark."""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from riverbed.client import ClusterSettings, consumer

from .decode import CloudEvent, Decoded, SchemaRegistry, cloudevent, decode

MODES = ("latest", "earliest", "offset", "time")
MAX_LIMIT = 500
MAX_SCAN = 100_000
READ_DEADLINE_S = 5.0
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class BadQuery(ValueError):
    """A browser parameter is malformed (answered with 400 and the message)."""


@dataclass
class Query:
    mode: str = "latest"
    partition: int | None = None
    offset: int = 0
    time: str = ""  # ISO 8601
    limit: int = 50
    scan: int = 1000
    key: str = ""
    header: str = ""  # NAME or NAME=VALUE
    json_path: str = ""  # a.b[0].c or a.b=VALUE
    text: str = ""  # substring of the decoded value

    @property
    def filtered(self) -> bool:
        return bool(self.key or self.header or self.json_path or self.text)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        q = cls()
        q.mode = params.get("mode") or "latest"
        if q.mode not in MODES:
            raise BadQuery(f"mode must be one of {', '.join(MODES)}")
        q.partition = _int(params, "partition", None, 0, 1 << 31)
        q.offset = _int(params, "offset", 0, 0, 1 << 62) or 0
        q.limit = _int(params, "limit", 50, 1, MAX_LIMIT) or 50
        q.scan = _int(params, "scan", 1000, 1, MAX_SCAN) or 1000
        q.time = params.get("time", "")
        q.key = params.get("key", "")
        q.header = params.get("header", "")
        q.json_path = params.get("json", "")
        q.text = params.get("text", "")
        if q.mode == "time":
            q.timestamp_ms()
        if q.json_path:
            parse_path(q.json_path.partition("=")[0])
        return q

    def timestamp_ms(self) -> int:
        try:
            dt = datetime.fromisoformat(self.time)
        except ValueError:
            raise BadQuery(f"time must be ISO 8601 (2026-12-07T10:00:00+00:00), got {self.time!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)


def _int(params: Mapping[str, str], name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadQuery(f"{name} must be between {lo} and {hi}")
    return value


def parse_path(path: str) -> list[str | int]:
    """`a.b[0].c` (a leading `$.` is allowed) -> ["a", "b", 0, "c"]."""
    path = path.strip()
    if path.startswith("$"):
        path = path[1:].lstrip(".")
    if not path:
        raise BadQuery("empty JSON path")
    out: list[str | int] = []
    pos = 0
    for m in _PATH_PART.finditer(path):
        gap = path[pos:m.start()]
        if gap not in ("", "."):
            raise BadQuery(f"bad JSON path {path!r}")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path):
        raise BadQuery(f"bad JSON path {path!r}")
    return out


_MISSING = object()


def lookup(value: Any, path: list[str | int]) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(value, list) and part < len(value):
            value = value[part]
            continue
        if isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
            continue
        return _MISSING
    return value


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Decoded
    value: Decoded
    headers: list[tuple[str, str]] = field(default_factory=list)
    event: CloudEvent | None = None

    @property
    def time(self) -> str:
        if self.timestamp <= 0:
            return "-"
        return datetime.fromtimestamp(self.timestamp / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition, "offset": self.offset, "timestamp": self.timestamp, "time": self.time,
            "key": self.key.text, "key_kind": self.key.kind,
            "value": self.value.text, "value_kind": self.value.kind, "value_size": self.value.size,
            "truncated": self.value.truncated, "headers": self.headers,
            "event": None if self.event is None else self.event.attributes,
        }


def matches(rec: Record, q: Query) -> bool:
    if q.key and q.key not in rec.key.text:
        return False
    if q.header:
        name, sep, want = q.header.partition("=")
        if not any(h == name and (not sep or v == want) for h, v in rec.headers):
            return False
    if q.json_path:
        path_text, sep, want = q.json_path.partition("=")
        found = lookup(rec.value.value, parse_path(path_text))
        if found is _MISSING:
            return False
        if sep:
            shown = found if isinstance(found, str) else _json_text(found)
            if shown != want.strip():
                return False
    return not (q.text and q.text not in rec.value.text)


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def to_record(msg: Any, registry: SchemaRegistry | None, max_bytes: int) -> Record:
    raw_headers = msg.headers() or []
    value = decode(msg.value(), registry, max_bytes)
    headers = [(name, (v or b"").decode("utf-8", "replace")) for name, v in raw_headers]
    ts = msg.timestamp()[1]
    return Record(msg.topic(), msg.partition(), msg.offset(), ts, decode(msg.key(), registry, max_bytes), value, headers, cloudevent(raw_headers, value.value))


def reader(settings: ClusterSettings) -> Consumer:
    """A consumer that never joins a group nor commits: assign() only."""
    return consumer(settings, f"riverbed-console-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": False, "fetch.max.bytes": 16 * 1024 * 1024})


@dataclass
class Page:
    records: list[Record]
    scanned: int
    partitions: list[int]
    elapsed_ms: float


def browse(settings: ClusterSettings, registry: SchemaRegistry | None, topic: str, partitions: list[int], q: Query, max_bytes: int) -> Page:
    started = time.monotonic()
    chosen = [p for p in partitions if q.partition is None or p == q.partition]
    c = reader(settings)
    try:
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        window = q.scan if q.filtered else q.limit
        times: dict[int, int] = {}
        if q.mode == "time":
            ts = q.timestamp_ms()
            found = c.offsets_for_times([TopicPartition(topic, p, ts) for p in chosen], READ_DEADLINE_S)
            times = {tp.partition: tp.offset for tp in found}
        for p in chosen:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), READ_DEADLINE_S)
            if q.mode == "latest":
                start = max(low, high - window)
            elif q.mode == "earliest":
                start = low
            elif q.mode == "offset":
                start = max(low, q.offset)
            else:
                start = times.get(p, OFFSET_END)
                if start < 0:
                    start = high
            end = min(high, start + window)
            if start < end:
                starts[p], ends[p] = start, end
        # bounded memory: the last `limit` matches per partition (latest), else the first `limit`
        kept: dict[int, deque[Record]] = {p: deque(maxlen=q.limit) for p in starts}
        records: list[Record] = []
        scanned = 0
        if starts:
            c.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
            remaining = dict(ends)
            position = dict(starts)
            deadline = time.monotonic() + READ_DEADLINE_S
            while remaining and time.monotonic() < deadline:
                for msg in c.consume(500, 0.05):
                    if msg.error() is not None:
                        continue
                    p, off = msg.partition() or 0, msg.offset() or 0
                    if p not in remaining or off >= ends[p]:
                        continue
                    position[p] = off + 1
                    scanned += 1
                    rec = to_record(msg, registry, max_bytes)
                    if matches(rec, q):
                        if q.mode == "latest":
                            kept[p].append(rec)
                        else:
                            records.append(rec)
                    if position[p] >= ends[p]:
                        del remaining[p]
                        c.incremental_unassign([TopicPartition(topic, p)])
                if q.mode != "latest" and len(records) >= q.limit:
                    break
        if q.mode == "latest":
            records = [r for part in kept.values() for r in part]
        records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        records = records[-q.limit:] if q.mode == "latest" else records[: q.limit]
        return Page(records, scanned, chosen, (time.monotonic() - started) * 1000)
    finally:
        c.close()


def read_one(settings: ClusterSettings, topic: str, partition: int, offset: int) -> Any:
    """The raw record at topic/partition/offset (for downloads), or None."""
    c = reader(settings)
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + READ_DEADLINE_S
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            if msg.offset() == offset:
                return msg
            if (msg.offset() or 0) > offset:
                return None
        return None
    finally:
        c.close()
