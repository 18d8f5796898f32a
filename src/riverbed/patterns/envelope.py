"""The event envelope: event id, type with version, time, source, aggregate id and version.

A stored event is one Kafka record: key = aggregate id, value = the envelope as JSON::

    {"eventId": "…uuid…", "eventType": "Deposited", "eventVersion": 1,
     "timestamp": "2025-01-01T09:00:00.000000Z", "source": "bank/teller-3",
     "aggregateType": "account", "aggregateId": "acc-1", "aggregateVersion": 7,
     "commandId": "…", "data": {...}}

Headers repeat the type and version (``riverbed.event.type``, ``riverbed.event.version``) so
a consumer can route without parsing the value.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from riverbed.messaging.events import CloudEvent

from .errors import InvalidEnvelope

H_TYPE = "riverbed.event.type"
H_VERSION = "riverbed.event.version"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Envelope:
    """One stored event. ``data`` is the event's fields at ``event_version``; ``offset`` and
    ``partition`` (and ``topic``) are where it was read from (-1 before it is stored)."""

    event_type: str
    event_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    data: dict[str, Any]
    source: str = "riverbed"
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utc_now)
    command_id: str | None = None
    partition: int = -1
    offset: int = -1
    topic: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "eventVersion": self.event_version,
            "timestamp": format_time(self.time),
            "source": self.source,
            "aggregateType": self.aggregate_type,
            "aggregateId": self.aggregate_id,
            "aggregateVersion": self.aggregate_version,
            "data": self.data,
        }
        if self.command_id is not None:
            out["commandId"] = self.command_id
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [(H_TYPE, self.event_type.encode()), (H_VERSION, str(self.event_version).encode())]

    def to_cloudevent(self) -> CloudEvent:
        """The event as a CloudEvent (riverbed.messaging), for consumers outside the event
        store: type ``<eventType>.v<version>``, subject = aggregate id, extensions
        ``aggregatetype``, ``aggregateversion`` and ``partitionkey`` (the record key)."""
        return CloudEvent(
            type=f"{self.event_type}.v{self.event_version}", source=self.source or "riverbed", data=self.data, id=self.event_id,
            time=format_time(self.time), datacontenttype="application/json", subject=self.aggregate_id,
            extensions={"aggregatetype": self.aggregate_type, "aggregateversion": str(self.aggregate_version), "partitionkey": self.aggregate_id},
        )

    def with_data(self, version: int, data: dict[str, Any]) -> Envelope:
        return replace(self, event_version=version, data=data)

    @classmethod
    def from_json(cls, obj: Any, partition: int = -1, offset: int = -1, topic: str = "") -> Envelope:
        if not isinstance(obj, dict):
            raise InvalidEnvelope(f"event envelope must be a JSON object, not {type(obj).__name__}")
        missing = [k for k in ("eventId", "eventType", "eventVersion", "timestamp", "aggregateId", "aggregateVersion") if k not in obj]
        if missing:
            raise InvalidEnvelope(f"event envelope lacks {', '.join(missing)}")
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise InvalidEnvelope("event envelope 'data' must be a JSON object")
        try:
            return cls(
                event_type=str(obj["eventType"]),
                event_version=int(obj["eventVersion"]),
                aggregate_type=str(obj.get("aggregateType", "")),
                aggregate_id=str(obj["aggregateId"]),
                aggregate_version=int(obj["aggregateVersion"]),
                data=data,
                source=str(obj.get("source", "")),
                event_id=str(obj["eventId"]),
                time=parse_time(str(obj["timestamp"])),
                command_id=None if obj.get("commandId") is None else str(obj["commandId"]),
                partition=partition,
                offset=offset,
                topic=topic,
            )
        except (TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"event envelope has a malformed field: {exc}") from exc

    @classmethod
    def decode(cls, value: bytes | None, partition: int = -1, offset: int = -1, topic: str = "") -> Envelope:
        if value is None:
            raise InvalidEnvelope("record has no value (a tombstone is not an event)")
        try:
            obj = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEnvelope(f"record value is not JSON: {exc}") from exc
        return cls.from_json(obj, partition, offset, topic)
