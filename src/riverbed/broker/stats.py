"""What the broker counts for the metrics endpoint (read when scraped, never pushed):

- per topic: bytes and records appended by Produce (Kafka's BytesInPerSec and
  MessagesInPerSec) and record bytes returned by Fetch (BytesOutPerSec);
- per API key and error code: the errors in responses (Kafka's ErrorsPerSec), found the way
  Kafka's ``AbstractResponse.errorCounts`` finds them: every ``error_code`` field of the
  response and of its nested structures (one per partition in Produce and Fetch).

All of it runs on the event loop, once per request or per partition in a response, never
per record.
"""

from __future__ import annotations

from typing import Any

from riverbed.protocol.primitives import Message

PRODUCE_KEY = 0
FETCH_KEY = 1

_shapes: dict[type, tuple[bool, tuple[str, ...]]] = {}


def _shape(cls: type) -> tuple[bool, tuple[str, ...]]:
    """(has an ``error_code`` field, the fields that may hold nested structures) of a
    generated message class."""
    shape = _shapes.get(cls)
    if shape is None:
        fields: tuple[str, ...] = tuple(getattr(cls, "__slots__", ()))
        nested = tuple(f for f in fields if f not in ("error_code", "error_message", "records") and not f.startswith("_"))
        shape = _shapes[cls] = ("error_code" in fields, nested)
    return shape


class BrokerStats:
    __slots__ = ("bytes_in", "bytes_out", "errors", "records_in")

    def __init__(self) -> None:
        self.bytes_in: dict[str, int] = {}
        self.records_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.errors: dict[tuple[int, int], int] = {}  # (api key, error code) -> responses

    def produced(self, topic: str, records: int, size: int) -> None:
        """A batch of ``records`` records, ``size`` bytes, appended to ``topic``."""
        self.bytes_in[topic] = self.bytes_in.get(topic, 0) + size
        self.records_in[topic] = self.records_in.get(topic, 0) + records

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's series go (as Kafka removes its per-topic metrics)."""
        for table in (self.bytes_in, self.records_in, self.bytes_out):
            table.pop(topic, None)

    def answered(self, key: int, response: Message, topic_names: Any) -> None:
        """Count the errors of a response, and the record bytes of a Fetch response
        (``topic_names(topic_id)``: a topic's name for Fetch v13+, which carries ids)."""
        if key == PRODUCE_KEY:  # the hot paths: their fields, without the generic walk
            for t in response.responses:  # type: ignore[attr-defined]
                for p in t.partition_responses:
                    if p.error_code:
                        self._count(PRODUCE_KEY, p.error_code)
        elif key == FETCH_KEY:
            self._fetched(response, topic_names)
        else:
            self._errors(key, response)

    def _count(self, key: int, code: int) -> None:
        k = (key, code)
        self.errors[k] = self.errors.get(k, 0) + 1

    def _fetched(self, response: Any, topic_names: Any) -> None:
        if getattr(response, "quiet_answer", False):  # fetch._QuietFetch: no error, no bytes
            return
        if response.error_code:
            self._count(FETCH_KEY, response.error_code)
        out = self.bytes_out
        for t in response.responses:
            name = t.topic
            for p in t.partitions:
                if p.error_code:
                    self._count(FETCH_KEY, p.error_code)
                    continue
                size = len(p.records) if p.records is not None else 0
                if size:
                    if not name:
                        name = topic_names(t.topic_id) or "unknown"
                    out[name] = out.get(name, 0) + size

    def _errors(self, key: int, msg: Message, depth: int = 0) -> None:
        has_error, nested = _shape(type(msg))
        if has_error:
            code = msg.error_code  # type: ignore[attr-defined]
            if code:
                self._count(key, code)
        if depth >= 4:
            return
        for name in nested:
            value = getattr(msg, name)
            if isinstance(value, list) and value and isinstance(value[0], Message):
                for item in value:
                    self._errors(key, item, depth + 1)
            elif isinstance(value, Message):
                self._errors(key, value, depth + 1)
