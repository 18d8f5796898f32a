"""CloudEvents 1.0 over the Kafka protocol binding, and the lecture's event envelope.

Binary content mode: every context attribute is a ``ce_<name>`` header (UTF-8 string), the
``datacontenttype`` attribute is the ``content-type`` header, the data is the record value.
Structured content mode: the whole event is the record value in the JSON event format, with
``content-type: application/cloudevents+json; charset=UTF-8``. In both modes the
``partitionkey`` extension attribute is the record key (and a keyed record without one gets it).

Headers are confluent-kafka's shape: a list of ``(name, bytes)`` pairs.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time as _time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=UTF-8"
JSON_CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]
Extension = str | bool | int | bytes | datetime
"""An extension attribute's value: the spec's String, Boolean, Integer, Binary and Timestamp
(URI and URI-reference are strings)."""
_INT32 = (-(2**31), 2**31 - 1)
_JSON_TYPES: dict[str, bool] = {}  # content type -> is JSON (bounded)
_GOOD_NAMES: set[str] = set()  # extension names already checked (bounded)
_CE_HEADER: dict[str, str] = {}  # attribute name -> header name (bounded)
_HEADER_TARGET: dict[str, str] = {}  # header name -> attribute name, "" for other headers (bounded)

_CORE = ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
_REQUIRED = ("specversion", "id", "source", "type")
_CORE_SET = frozenset(_CORE)
_CORE_HEADERS = tuple((n, "content-type" if n == "datacontenttype" else "ce_" + n) for n in _CORE)
_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# RFC 3339 date-time (the spec's Timestamp type)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class InvalidEvent(ValueError):
    """A record or object is not a valid CloudEvent (missing or malformed attribute)."""


_now_cache: tuple[int, str] = (-1, "")


def _now() -> str:
    """The current time as RFC 3339 text with milliseconds (formatted once per millisecond)."""
    global _now_cache
    ms = int(_time.time() * 1000)
    cached = _now_cache
    if cached[0] != ms:
        secs, frac = divmod(ms, 1000)
        text = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(secs)) + f".{frac:03d}Z"
        cached = _now_cache = (ms, text)
    return cached[1]


def new_id() -> str:
    """A random (version 4) UUID as text, without ``uuid.uuid4``'s system call per id: the
    bits come from ``random``, seeded from the OS and re-seeded in a forked child."""
    h = f"{random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def format_time(value: datetime) -> str:
    """A timezone-aware datetime as an RFC 3339 timestamp (``Z`` for UTC)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent("a timestamp needs a timezone (an aware datetime)")
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (fractions beyond microseconds are cut)."""
    if not _RFC3339.match(text):
        raise InvalidEvent(f"not an RFC 3339 timestamp: {text!r}")
    head, sep, rest = text.partition(".")
    if sep:  # fromisoformat takes at most 6 fraction digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text.replace("t", "T", 1))


def _ext_text(value: Extension) -> str:
    """An extension value's canonical string form (the binary mode's header value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return format_time(value)


def _ext_json(value: Extension) -> Any:
    """An extension value in the JSON format: Boolean and Integer as JSON values, the rest as strings."""
    return value if isinstance(value, bool | int | str) else _ext_text(value)


def is_json_content_type(content_type: str | None) -> bool:
    """JSON data per the spec: no content type, ``application/json``, ``text/json`` or ``*+json``."""
    if content_type is None:
        return True
    known = _JSON_TYPES.get(content_type)
    if known is None:
        media = content_type.split(";", 1)[0].strip().lower()
        known = media in ("application/json", "text/json") or media.endswith("+json")
        if len(_JSON_TYPES) < 1024:
            _JSON_TYPES[content_type] = known
    return known


@dataclass
class CloudEvent:
    """A CloudEvents 1.0 event. ``data`` is bytes (sent as they are) or a JSON-serialisable
    value (sent as JSON when the content type is JSON, the default)."""

    type: str
    source: str
    data: Any = None
    id: str = field(default_factory=lambda: new_id())
    time: str | None = field(default_factory=_now)
    """RFC 3339 text (a timezone-aware ``datetime`` given here is formatted); see ``timestamp``."""
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    specversion: str = SPECVERSION
    extensions: dict[str, Extension] = field(default_factory=dict)
    """Extension attributes: strings, or typed values (bool, int in 32 bits, bytes, aware
    datetime) written in the spec's canonical string form in headers and as JSON values in
    the structured format. Read back from binary mode they are strings (headers carry no type)."""

    def __post_init__(self) -> None:
        if isinstance(self.time, datetime):
            self.time = format_time(self.time)

    @property
    def timestamp(self) -> datetime | None:
        """``time`` as an aware datetime (None when unset)."""
        return None if self.time is None else parse_time(self.time)

    def attributes(self) -> dict[str, str]:
        """Every context attribute that is set, core and extension, as strings."""
        out = {name: getattr(self, name) for name in _CORE if getattr(self, name) is not None}
        for name, value in self.extensions.items():
            out[name] = _ext_text(value)
        return out

    @property
    def partitionkey(self) -> str | None:
        value = self.extensions.get("partitionkey")
        return None if value is None else _ext_text(value)

    def validate(self) -> CloudEvent:
        id_, source, type_ = self.id, self.source, self.type
        if not (
            id_
            and source
            and type_
            and id_.__class__ is str
            and source.__class__ is str
            and type_.__class__ is str
        ):
            for name in _REQUIRED:
                value = getattr(self, name)
                if not value or not isinstance(value, str):
                    raise InvalidEvent(f"required attribute {name!r} is missing or empty")
        if self.specversion != SPECVERSION:
            raise InvalidEvent(f"unsupported specversion {self.specversion!r} (only {SPECVERSION})")
        t = self.time
        if t is not None and t is not _now_cache[1]:  # a time _now() just made is valid
            if not isinstance(t, str):
                raise InvalidEvent("attribute 'time' must be a string")
            if not _RFC3339.match(t):
                raise InvalidEvent(f"attribute 'time' is not an RFC 3339 timestamp: {t!r}")
        for name in ("datacontenttype", "dataschema", "subject"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidEvent(f"attribute {name!r} must be a string")
        for name, value in self.extensions.items():
            if name not in _GOOD_NAMES:
                if name in _CORE or name in ("data", "data_base64"):
                    raise InvalidEvent(f"extension {name!r} shadows a core attribute")
                if not _NAME.match(name):
                    raise InvalidEvent(
                        f"attribute name {name!r} is not 1-20 lower-case letters or digits"
                    )
                if len(_GOOD_NAMES) < 4096:
                    _GOOD_NAMES.add(name)
            if value.__class__ is str or isinstance(value, bool | str | bytes):
                continue
            if isinstance(value, int):
                if not _INT32[0] <= value <= _INT32[1]:
                    raise InvalidEvent(
                        f"extension {name!r}: {value} is outside the spec's 32-bit Integer"
                    )
            elif isinstance(value, datetime):
                format_time(value)
            else:
                raise InvalidEvent(
                    f"extension {name!r} must be a string, bool, int, bytes or datetime, not {type(value).__name__}"
                )
        return self

    # --- data encoding -------------------------------------------------------------------
    def data_bytes(self) -> bytes | None:
        if self.data is None:
            return None
        if isinstance(self.data, bytes | bytearray | memoryview):
            return bytes(self.data)
        if is_json_content_type(self.datacontenttype):
            return json.dumps(self.data, separators=(",", ":")).encode()
        if isinstance(self.data, str):
            return self.data.encode()
        raise InvalidEvent(
            f"data of type {type(self.data).__name__} needs a JSON content type or bytes"
        )

    # --- the lecture's envelope ------------------------------------------------------------
    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> CloudEvent:
        """``{"eventId", "eventType", "timestamp", "source", "data"}`` -> CloudEvent
        (eventId -> id, eventType -> type, timestamp -> time, source, data)."""
        missing = [k for k in ("eventId", "eventType", "source") if not envelope.get(k)]
        if missing:
            raise InvalidEvent(f"envelope lacks {', '.join(missing)}")
        return cls(
            id=str(envelope["eventId"]),
            type=str(envelope["eventType"]),
            source=str(envelope["source"]),
            time=envelope.get("timestamp") or _now(),
            data=envelope.get("data"),
            datacontenttype=JSON_CONTENT_TYPE,
        ).validate()

    def to_envelope(self) -> dict[str, Any]:
        return {
            "eventId": self.id,
            "eventType": self.type,
            "timestamp": self.time,
            "source": self.source,
            "data": self.data,
        }


# --- binary content mode ----------------------------------------------------------------------
def _ce_header(name: str) -> str:
    header = _CE_HEADER.get(name)
    if header is None:
        header = "content-type" if name == "datacontenttype" else "ce_" + name
        if len(_CE_HEADER) < 4096:
            _CE_HEADER[name] = header
    return header


def to_binary(event: CloudEvent) -> tuple[bytes | None, bytes | None, Headers]:
    """-> (key, value, headers) for ``Producer.produce(topic, value, key, headers=...)``."""
    event.validate()
    headers: Headers = []
    for name, header_name in _CORE_HEADERS:
        value = getattr(event, name)
        if value is not None:
            headers.append((header_name, value.encode()))
    key = None
    for name, ext in event.extensions.items():
        if name == "partitionkey":  # it travels as the record key
            key = _ext_text(ext).encode()
        else:
            headers.append((_ce_header(name), _ext_text(ext).encode()))
    return key, event.data_bytes(), headers


def _header_dict(headers: Headers | None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, value in headers or ():
        out[name.lower()] = value if isinstance(value, bytes) else (value or b"")
    return out


def content_mode(headers: Headers | None) -> str | None:
    """``"structured"``, ``"binary"``, ``"batch"`` (not a Kafka binding mode) or None (not a
    CloudEvent) for a record's headers."""
    h = _header_dict(headers)
    ctype = h.get("content-type", b"").decode("utf-8", "replace").lower()
    if ctype.startswith("application/cloudevents-batch"):
        return "batch"
    if ctype.startswith("application/cloudevents"):
        return "structured"
    if "ce_specversion" in h:
        return "binary"
    return None


def _target(name: str) -> str:
    """The attribute a header carries in binary mode ("" for other headers), cached."""
    target = _HEADER_TARGET.get(name)
    if target is None:
        lname = name.lower()
        target = (
            "datacontenttype"
            if lname == "content-type"
            else lname[3:]
            if lname.startswith("ce_")
            else ""
        )
        if len(_HEADER_TARGET) < 4096:
            _HEADER_TARGET[name] = target
    return target


def _scan(headers: Headers | None) -> dict[str, Any]:
    """attribute -> raw header value, one pass over the headers."""
    raw: dict[str, Any] = {}
    for name, value in headers or ():
        target = _target(name)
        if target:
            raw[target] = value
    return raw


def from_binary(
    key: bytes | None, value: bytes | None, headers: Headers | None, *, decode_json: bool = True
) -> CloudEvent:
    return _from_scanned(key, value, _scan(headers), decode_json)


def _from_scanned(
    key: bytes | None, value: bytes | None, raw: dict[str, Any], decode_json: bool = True
) -> CloudEvent:
    core: dict[str, Any] = {"time": None}
    ext: dict[str, Extension] = {}
    for target, data in raw.items():
        try:
            text = bytes(data).decode("utf-8") if data is not None else ""
        except UnicodeDecodeError as exc:
            header = "content-type" if target == "datacontenttype" else "ce_" + target
            raise InvalidEvent(f"header {header!r} is not UTF-8") from exc
        if target in _CORE_SET:
            core[target] = text
        else:
            ext[target] = text
    if key is not None and "partitionkey" not in ext:
        ext["partitionkey"] = key.decode("utf-8", "replace")
    for name in _REQUIRED:
        if not core.get(name):
            raise InvalidEvent(f"required attribute {name!r} is missing or empty")
    data_: Any = value
    if value is not None and decode_json and is_json_content_type(core.get("datacontenttype")):
        try:
            data_ = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise InvalidEvent(f"data is declared JSON but does not parse: {exc}") from exc
    return CloudEvent(data=data_, extensions=ext, **core).validate()


def _build(attrs: dict[str, Any], data: Any) -> CloudEvent:
    for name in _REQUIRED:
        if not attrs.get(name) or not isinstance(attrs[name], str):
            raise InvalidEvent(f"required attribute {name!r} is missing or empty")
    core: dict[str, Any] = {"time": None}
    ext: dict[str, Extension] = {}
    for name, v in attrs.items():
        if name in _CORE_SET:
            core[name] = v
        elif isinstance(v, bool | str) or (isinstance(v, int) and _INT32[0] <= v <= _INT32[1]):
            ext[name] = v  # JSON's Boolean and Integer keep their type
        else:
            ext[name] = json.dumps(v)
    return CloudEvent(data=data, extensions=ext, **core).validate()


# --- structured content mode --------------------------------------------------------------------
def to_structured(event: CloudEvent) -> tuple[bytes | None, bytes, Headers]:
    event.validate()
    doc = _json_doc(event)
    key = event.partitionkey.encode() if event.partitionkey is not None else None
    return (
        key,
        json.dumps(doc, separators=(",", ":")).encode(),
        [("content-type", STRUCTURED_CONTENT_TYPE.encode())],
    )


def _json_doc(event: CloudEvent) -> dict[str, Any]:
    """The event in the JSON event format, as a dict."""
    doc: dict[str, Any] = {
        name: getattr(event, name) for name in _CORE if getattr(event, name) is not None
    }
    for name, value in event.extensions.items():
        doc[name] = _ext_json(value)
    if event.data is not None:
        if isinstance(event.data, bytes | bytearray | memoryview):
            doc["data_base64"] = base64.b64encode(bytes(event.data)).decode()
        elif is_json_content_type(event.datacontenttype):
            doc["data"] = event.data
        else:
            doc["data"] = event.data if isinstance(event.data, str) else None
            if doc["data"] is None:
                raise InvalidEvent("non-JSON data must be bytes or str in structured mode")
    return doc


def from_structured(key: bytes | None, value: bytes | None) -> CloudEvent:
    if value is None:
        raise InvalidEvent("structured event with a null value")
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(f"structured event is not JSON: {exc}") from exc
    return _from_doc(doc, key)


def _from_doc(doc: Any, key: bytes | None) -> CloudEvent:
    if not isinstance(doc, dict):
        raise InvalidEvent("structured event is not a JSON object")
    data: Any = None
    if "data_base64" in doc:
        try:
            data = base64.b64decode(doc.pop("data_base64"), validate=True)
        except (ValueError, TypeError) as exc:
            raise InvalidEvent("data_base64 is not base64") from exc
    if "data" in doc:
        data = doc.pop("data")
    if key is not None and "partitionkey" not in doc:
        doc["partitionkey"] = key.decode("utf-8", "replace")
    return _build(doc, data)


def from_record(key: bytes | None, value: bytes | None, headers: Headers | None) -> CloudEvent:
    """Either content mode, told apart by the headers; InvalidEvent when neither."""
    raw = _scan(headers)
    ctype = raw.get("datacontenttype")
    if ctype is not None:
        media = bytes(ctype[:30]).lower()
        if media.startswith(b"application/cloudevents-batch"):
            raise InvalidEvent(
                "a CloudEvents batch: the Kafka protocol binding has no batch mode (decode the value with from_batch)"
            )
        if media.startswith(b"application/cloudevents"):
            return from_structured(key, value)
    if "specversion" in raw:
        return _from_scanned(key, value, raw)
    if value is not None and value[:1] == b"{" and b'"specversion"' in value:
        # structured mode written with the event's own content type (the Python SDK does so)
        return from_structured(key, value)
    raise InvalidEvent(
        "record carries no CloudEvent (no ce_specversion header, no cloudevents content-type)"
    )


def from_message(msg: Any) -> CloudEvent:
    """A confluent-kafka ``Message`` -> CloudEvent."""
    return from_record(msg.key(), msg.value(), msg.headers())


# --- batch format (JSON format section 4; HTTP binding's batched content mode) ---------------------
def to_batch(events: list[CloudEvent]) -> tuple[str, bytes]:
    """``(content type, body)`` of a JSON batch (``application/cloudevents-batch+json``): an
    array of events in the JSON format, for the HTTP binding's batched content mode. The
    Kafka protocol binding defines no batch mode: produce each event as its own record."""
    docs = [_json_doc(e.validate()) for e in events]
    return BATCH_CONTENT_TYPE, json.dumps(docs, separators=(",", ":")).encode()


def from_batch(body: bytes | str, content_type: str | None = None) -> list[CloudEvent]:
    """The events of a JSON batch body (an empty array is an empty batch). ``content_type``,
    when given, must be ``application/cloudevents-batch+json``. Any invalid member makes the
    whole batch invalid (InvalidEvent names its index)."""
    if (
        content_type is not None
        and not content_type.split(";", 1)[0].strip().lower()
        == "application/cloudevents-batch+json"
    ):
        raise InvalidEvent(f"not a CloudEvents batch content type: {content_type!r}")
    try:
        docs = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(f"batch is not JSON: {exc}") from exc
    if not isinstance(docs, list):
        raise InvalidEvent("a CloudEvents batch is a JSON array")
    out = []
    for i, doc in enumerate(docs):
        try:
            out.append(_from_doc(doc, None))
        except InvalidEvent as exc:
            raise InvalidEvent(f"batch member {i}: {exc}") from exc
    return out


def batch_to_records(
    body: bytes | str, content_type: str | None = None, *, structured: bool = False
) -> list[tuple[bytes | None, bytes | None, Headers]]:
    """An HTTP batch body as Kafka records, one per event (binary mode, or structured), each
    ``(key, value, headers)`` for ``Producer.produce``: how a batch crosses into Kafka."""
    convert = to_structured if structured else to_binary
    return [convert(e) for e in from_batch(body, content_type)]
