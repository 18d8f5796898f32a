"""Every generated message, every valid version: random instances survive encode -> decode.

Values are drawn from the field tables the generator emits beside the classes
(``riverbed.protocol.{messages,internal}._fields``), so the test covers flexible versions,
tagged fields, nullable fields and nested structs as the specs define them, and runs on a
fresh clone without Kafka's JSON specs (only test_codegen's "generated code is current"
check needs them). Self-consistency only: test_golden_frames.py holds bytes from outside.
"""

from __future__ import annotations

import contextlib
import importlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.internal._fields import FIELDS as INTERNAL_FIELDS
from riverbed.protocol.messages._fields import FIELDS as MESSAGE_FIELDS
from riverbed.protocol.primitives import Message, Reader

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}

Row = tuple[str, str, tuple[int, int], tuple[int, int], int | None, tuple[int, int]]
TABLES: dict[str, tuple[Row, ...]] = {f"messages.{k}": v for k, v in MESSAGE_FIELDS.items()}
TABLES.update({f"internal.{k}": v for k, v in INTERNAL_FIELDS.items()})


def resolve(key: str) -> type[Message]:
    """'messages.produce.ProduceRequest.TopicProduceData' -> the class."""
    package, module, *names = key.split(".")
    obj: Any = importlib.import_module(f"riverbed.protocol.{package}.{module}")
    for name in names:
        obj = getattr(obj, name)
    return obj  # type: ignore[no-any-return]


TOP = sorted(k for k in TABLES if k.count(".") == 2)
CASES = [(key, v) for key in TOP for v in range(resolve(key).MIN_VERSION, resolve(key).MAX_VERSION + 1)]


def in_versions(vs: tuple[int, int], v: int) -> bool:
    lo, hi = vs
    return v >= lo and (hi == -1 or v <= hi)


def value_strategy(top: str, row: Row, v: int, flexible: bool, depth: int) -> st.SearchStrategy[Any]:
    _, typ, _, nullable, _, _ = row
    is_array = typ.startswith("[]")
    t = typ[2:] if is_array else typ
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        base: st.SearchStrategy[Any] = st.integers(lo, hi)
    elif t == "bool":
        base = st.booleans()
    elif t == "float64":
        base = st.floats(allow_nan=False)
    elif t == "string":
        base = st.text(max_size=8)
    elif t in ("bytes", "records"):
        base = st.binary(max_size=16)
    elif t == "uuid":
        base = st.uuids().map(lambda u: uuid.UUID(int=u.int))
    else:
        base = struct_strategy(top, f"{top}.{t}", v, flexible, depth + 1)
    if is_array:
        base = st.lists(base, max_size=3 if depth < 2 else 1)
    if in_versions(nullable, v) or typ == "records":
        base = st.one_of(st.none(), base)
    return base


def struct_strategy(top: str, key: str, v: int, flexible: bool, depth: int) -> st.SearchStrategy[Any]:
    kwargs = {}
    for row in TABLES[key]:
        attr, _, versions, _, tag, tagged = row
        present = in_versions(versions, v)
        if tag is not None:
            present = present and in_versions(tagged, v) and flexible
        if present:
            kwargs[attr] = value_strategy(top, row, v, flexible, depth)
    return st.builds(resolve(key), **kwargs)


def test_tables_cover_every_generated_message() -> None:
    from riverbed.protocol.messages import API_MESSAGES

    for module, request, response in API_MESSAGES.values():
        assert f"messages.{module}.{request}" in TABLES and f"messages.{module}.{response}" in TABLES
    assert len(CASES) >= 700  # every version of every message (716 with the specs of this commit)


def normalise(obj: Any) -> Any:
    if isinstance(obj, Message):
        return {k: normalise(getattr(obj, k)) for k in obj.__dataclass_fields__}  # type: ignore[attr-defined]
    if isinstance(obj, list):
        return [normalise(x) for x in obj]
    if isinstance(obj, memoryview | bytearray):
        return bytes(obj)
    return obj


@pytest.mark.parametrize(("key", "version"), CASES, ids=[f"{k.split('.')[-1]}-v{v}" for k, v in CASES])
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_roundtrip(key: str, version: int, data: st.DataObject) -> None:
    cls = resolve(key)
    msg = data.draw(struct_strategy(key, key, version, version >= cls.FLEXIBLE_VERSION, 0))
    encoded = msg.encode(version)
    decoded = cls.decode(encoded, version)
    assert normalise(decoded) == normalise(msg)
    assert decoded.encode(version) == encoded


@pytest.mark.parametrize(("key", "version"), CASES[::7], ids=[f"{k.split('.')[-1]}-v{v}" for k, v in CASES[::7]])
@settings(max_examples=10, deadline=None)
@given(blob=st.binary(max_size=64))
def test_garbage_only_raises_decode_error(key: str, version: int, blob: bytes) -> None:
    cls = resolve(key)
    with contextlib.suppress(DecodeError):
        cls.read(Reader(blob), version)


def test_hostile_array_length_is_refused_without_allocating() -> None:
    from riverbed.protocol.messages.produce import ProduceRequest

    # acks, timeout, then an array claiming 2^31-1 topics in a 14-byte body
    body = b"\xff\xff" + b"\x00\x00" + b"\x00\x00\x75\x30" + b"\x7f\xff\xff\xff"
    with pytest.raises(DecodeError):
        ProduceRequest.decode(body, 3)


def test_records_are_zero_copy_views() -> None:
    from riverbed.protocol.messages.produce import ProduceRequest

    req = ProduceRequest(
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="t", partition_data=[ProduceRequest.PartitionProduceData(index=0, records=b"x" * 100)]
            )
        ],
    )
    raw = req.encode(7)
    back = ProduceRequest.decode(raw, 7)
    recs = back.topic_data[0].partition_data[0].records
    assert isinstance(recs, memoryview)
    assert bytes(recs) == b"x" * 100


def test_default_tagged_fields_are_omitted() -> None:
    from riverbed.protocol.messages.api_versions import ApiVersionsResponse

    resp = ApiVersionsResponse(error_code=0, api_keys=[ApiVersionsResponse.ApiVersion(18, 0, 3)])
    raw = resp.encode(3)
    # error(2) + compact array len(1) + one key (2+2+2+tags 1) + throttle(4) + empty tags(1)
    assert len(raw) == 2 + 1 + 7 + 4 + 1
    assert raw.endswith(b"\x00")
