"""Every generated message, every valid version: random instances survive encode -> decode.

Values are drawn from the spec model itself (tools/kafka_codegen.py), so the test covers
flexible versions, tagged fields, nullable fields and nested structs as the specs define them.
"""

from __future__ import annotations

import contextlib
import importlib
import uuid
from typing import Any

import kafka_codegen as cg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.primitives import Message, Reader

SPECS = cg.DEFAULT_SPECS
if not (SPECS / "clients").is_dir():  # pragma: no cover
    pytest.skip("Kafka specs not present", allow_module_level=True)

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}


SPEC_OF: dict[str, str] = {}


def load_specs() -> list[cg.MessageSpec]:
    out = []
    for sub, pkg in cg.SPEC_PACKAGES.items():
        for path in sorted((SPECS / sub).glob("*.json")):
            spec = cg.MessageSpec.load(path)
            SPEC_OF[spec.name] = pkg
            out.append(spec)
    return out


def cls_for(spec: cg.MessageSpec) -> type[Message]:
    mod = importlib.import_module(f"riverbed.protocol.{SPEC_OF[spec.name]}.{cg.module_name(spec.name)}")
    return getattr(mod, spec.name)  # type: ignore[no-any-return]


ALL = load_specs()
CASES = [
    (spec, v)
    for spec in ALL
    for v in range(spec.valid.lo, (spec.valid.hi if spec.valid.hi is not None else spec.valid.lo) + 1)
]


def in_versions(vs: cg.Versions, v: int) -> bool:
    return v >= vs.lo and (vs.hi is None or v <= vs.hi)


def value_strategy(spec: cg.MessageSpec, f: cg.FieldSpec, v: int, owner: type, depth: int) -> st.SearchStrategy[Any]:
    t = f.elem
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
        struct_cls = getattr(cls_for(spec), t)
        fields = Emitter(spec).structs[t]
        base = struct_strategy(spec, struct_cls, fields, v, depth + 1)
    if f.is_array:
        base = st.lists(base, max_size=3 if depth < 2 else 1)
    if in_versions(f.nullable, v) or f.type == "records":
        base = st.one_of(st.none(), base)
    return base


def Emitter(spec: cg.MessageSpec) -> cg.Emitter:
    cached = _emitters.get(spec.name)
    if cached is None:
        cached = _emitters[spec.name] = cg.Emitter(spec)
    return cached


_emitters: dict[str, cg.Emitter] = {}


def struct_strategy(spec: cg.MessageSpec, cls: type, fields: list[cg.FieldSpec], v: int, depth: int) -> st.SearchStrategy[Any]:
    kwargs = {}
    for f in fields:
        present = in_versions(f.versions, v)
        if f.tag is not None:
            present = present and in_versions(f.tagged, v) and in_versions(spec.flexible, v)
        if present:
            kwargs[f.attr] = value_strategy(spec, f, v, cls, depth)
    return st.builds(cls, **kwargs)


def normalise(obj: Any) -> Any:
    if isinstance(obj, Message):
        return {k: normalise(getattr(obj, k)) for k in obj.__dataclass_fields__}  # type: ignore[attr-defined]
    if isinstance(obj, list):
        return [normalise(x) for x in obj]
    if isinstance(obj, memoryview | bytearray):
        return bytes(obj)
    return obj


@pytest.mark.parametrize(("spec", "version"), CASES, ids=[f"{s.name}-v{v}" for s, v in CASES])
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_roundtrip(spec: cg.MessageSpec, version: int, data: st.DataObject) -> None:
    cls = cls_for(spec)
    msg = data.draw(struct_strategy(spec, cls, spec.fields, version, 0))
    encoded = msg.encode(version)
    decoded = cls.decode(encoded, version)
    assert normalise(decoded) == normalise(msg)
    assert decoded.encode(version) == encoded


@pytest.mark.parametrize(("spec", "version"), CASES[::7], ids=[f"{s.name}-v{v}" for s, v in CASES[::7]])
@settings(max_examples=10, deadline=None)
@given(blob=st.binary(max_size=64))
def test_garbage_only_raises_decode_error(spec: cg.MessageSpec, version: int, blob: bytes) -> None:
    cls = cls_for(spec)
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
