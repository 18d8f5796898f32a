"""Protobuf schemas in the registry: `.proto` text and serialized descriptors, imports through
references and built-in files, the stored text form, normalization, refusals."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2

from riverbed.registry import errors
from riverbed.registry.formats import InvalidSchema, protobuf
from riverbed.registry.state import Reference, State

ADDRESS = 'syntax = "proto3";\npackage shop;\n\nmessage Address {\n  string city = 1;\n}\n'
ORDER = """syntax = "proto3";
package shop;
import "address.proto";
import "google/protobuf/timestamp.proto";
import "confluent/meta.proto";
option java_package = "com.example.shop";

message Order {
  string id = 1 [(confluent.field_meta).tags = "PII"];
  optional int32 qty = 2;
  map<string, Address> stops = 3;
  oneof pay { string card = 4; bytes token = 5; }
  reserved 9, 10 to 12;
  reserved "legacy";
  Status status = 6;
  google.protobuf.Timestamp at = 7;
  repeated Line lines = 8;
  message Line { string sku = 1; int64 n = 2; }
  enum Status { NEW = 0; PAID = 1; }
}
message Refund { Order.Line line = 1; }
"""


def register(state: State, subject: str, text: str, refs: tuple[Reference, ...] = (), normalize: bool = False) -> int:
    row, records = state.plan_register(subject, "PROTOBUF", text, refs, normalize)
    for key, value in records:
        state.apply(key, value)
    return row.id


def with_address() -> tuple[State, tuple[Reference, ...]]:
    state = State()
    register(state, "address.proto", ADDRESS)
    return state, (Reference("address.proto", "address.proto", 1),)


def test_text_parses_and_prints_back_to_an_equal_schema() -> None:
    state, refs = with_address()
    parsed = state.parse("PROTOBUF", ORDER, refs)
    assert isinstance(parsed, protobuf.ProtobufSchema)
    assert parsed.names() == ["shop.Order", "shop.Refund"]  # message indexes follow this order
    again = state.parse("PROTOBUF", parsed.canonical(), refs)
    assert again.canonical() == parsed.canonical()
    assert again.normalized() == parsed.normalized()
    assert "map<string, Address> stops = 3;" in parsed.canonical()
    assert "(confluent.field_meta).tags = \"PII\"" in parsed.canonical()
    assert "optional int32 qty = 2;" in parsed.canonical()
    assert "map<string, .shop.Address> stops = 3;" in parsed.normalized()


def test_a_serialized_descriptor_is_accepted_and_stored_as_text() -> None:
    """What confluent-kafka's ProtobufSerializer sends: base64 of a FileDescriptorProto."""
    state, refs = with_address()
    parsed = state.parse("PROTOBUF", ORDER, refs)
    assert isinstance(parsed, protobuf.ProtobufSchema)
    blob = parsed.serialized()
    from_blob = state.parse("PROTOBUF", blob, refs)
    assert from_blob.normalized() == parsed.normalized()
    schema_id = register(state, "orders-value", blob, refs)
    stored = state.schema_by_id(schema_id).schema
    assert stored.startswith('syntax = "proto3";') and "message Order {" in stored
    # the text form and the serialized form are one schema once normalized
    assert register(state, "orders-value", ORDER, refs, normalize=True) == register(state, "orders-value", blob, refs, normalize=True)


def test_serialized_format_builds_in_a_descriptor_pool() -> None:
    state, refs = with_address()
    schema_id = register(state, "orders-value", ORDER, refs)
    out = state.formatted(state.schema_by_id(schema_id), "serialized")
    proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(out["schema"]))
    proto.name = "order.proto"
    pool = descriptor_pool.DescriptorPool()
    for dep in (timestamp_pb2.DESCRIPTOR,):
        pool.AddSerializedFile(dep.serialized_pb)
    addr = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(state.formatted(state.get_version("address.proto", 1), "serialized")["schema"]))
    addr.name = "address.proto"
    pool.Add(addr)
    meta = protobuf.builtin_files()["confluent/meta.proto"]
    pool.AddSerializedFile(descriptor_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(meta)
    built = pool.Add(proto)
    assert [m.full_name for m in built.message_types_by_name.values()] == ["shop.Order", "shop.Refund"]
    assert built.message_types_by_name["Order"].fields_by_name["stops"].message_type.GetOptions().map_entry
    assert state.formatted(state.schema_by_id(schema_id), None)["schema"].startswith("syntax")


def test_normalize_gives_equal_schemas_one_id() -> None:
    state, refs = with_address()
    a = ORDER
    b = ORDER.replace('option java_package = "com.example.shop";', 'option java_package = "com.example.shop";\n// a comment').replace("Status status = 6;", "shop.Order.Status status = 6;")
    first = register(state, "n1", a, refs, normalize=True)
    assert register(state, "n2", b, refs, normalize=True) == first
    assert state.lookup("n1", "PROTOBUF", b, refs, normalize=True).id == first


def test_imports_need_a_reference_unless_built_in() -> None:
    state = State()
    with pytest.raises(errors.RegistryError) as e:
        state.plan_register("o", "PROTOBUF", ORDER, (), False)
    assert e.value.code == 42201 and "address.proto" in e.value.message
    builtin = 'syntax = "proto3";\nimport "google/protobuf/wrappers.proto";\nimport "confluent/type/decimal.proto";\nmessage M { google.protobuf.StringValue s = 1; confluent.type.Decimal d = 2; }\n'
    assert register(state, "w", builtin) == 1


def test_proto2_round_trip() -> None:
    text = 'syntax = "proto2";\npackage legacy;\nmessage M {\n  required string id = 1;\n  optional int32 n = 2 [default = 7];\n  optional string s = 3 [default = "a\\"b"];\n  repeated int32 r = 4 [packed = true];\n  extensions 100 to max;\n}\nextend M {\n  optional int32 ext = 100;\n}\n'
    parsed = protobuf.parse(text)
    assert protobuf.parse(parsed.canonical()).canonical() == parsed.canonical()
    assert "required string id = 1;" in parsed.canonical()
    assert 'default = "a\\"b"' in parsed.canonical()
    no_syntax = protobuf.parse("message M { optional int32 a = 1; }")
    assert no_syntax.canonical().startswith('syntax = "proto2";')


@pytest.mark.parametrize(
    "bad",
    [
        "message {",
        'syntax = "proto3"; message A { Unknown f = 1; }',
        'syntax = "proto3"; message A { int32 a = 1; int32 b = 1; }',
        'syntax = "proto3"; message A { required int32 a = 1; }',
        'syntax = "proto3"; enum E { ONE = 1; }',
        'syntax = "proto3"; message A { int32 a = 1 [no_such_option = true]; }',
        'syntax = "proto4";',
        'edition = "2023"; message A { int32 a = 1; }',
        'syntax = "proto2"; message A { optional group G = 1 { optional int32 x = 2; } }',
        'syntax = "proto3"; message A { string a = 1 [default = "x',
        "\x00\x01",
        'syntax = "proto3";' + "message A { " * 3000 + "}" * 3000,  # nesting too deep: refused, not a crash
    ],
)
def test_invalid_schemas_refused(bad: str) -> None:
    with pytest.raises(InvalidSchema):
        protobuf.parse(bad)


def test_reference_cycle_and_unknown_reference_refused() -> None:
    state = State()
    with pytest.raises(errors.RegistryError) as e:
        state.plan_register("o", "PROTOBUF", ORDER, (Reference("address.proto", "nope", 1),), False)
    assert e.value.code == 42201


META_TEXT = """syntax = "proto3";
package shop;
import "confluent/meta.proto";
message Card {
  option (confluent.message_meta).doc = "a payment card";
  string number = 1 [(confluent.field_meta).tags = "PII", (confluent.field_meta) = { params { key: "k" value: "v" } }];
  string holder = 2 [(confluent.field_meta).tags = "PII", deprecated = true];
}
"""


def _built(blob: str) -> Any:
    from confluent_kafka.schema_registry.confluent import meta_pb2

    proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(blob))
    proto.name = "card.proto"
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(meta_pb2.DESCRIPTOR.serialized_pb)
    return pool.Add(proto), meta_pb2


def test_confluent_meta_options_reach_the_client_as_extensions() -> None:
    """confluent-kafka's rule executors read field tags as the `confluent.field_meta`
    extension of the descriptor's options: the serialized form carries them so."""
    fd, meta_pb2 = _built(protobuf.parse(META_TEXT).serialized())
    card = fd.message_types_by_name["Card"]
    number = card.fields_by_name["number"].GetOptions().Extensions[meta_pb2.field_meta]
    assert list(number.tags) == ["PII"] and dict(number.params) == {"k": "v"}
    holder = card.fields_by_name["holder"].GetOptions()
    assert list(holder.Extensions[meta_pb2.field_meta].tags) == ["PII"] and holder.deprecated
    assert card.GetOptions().Extensions[meta_pb2.message_meta].doc == "a payment card"


def test_meta_extensions_of_a_serialized_descriptor_are_kept_in_the_text() -> None:
    """A descriptor compiled by protoc carries the meta options as extension bytes; the stored
    text shows them, and the text parses back to a descriptor with the same tags."""
    from confluent_kafka.schema_registry.confluent import meta_pb2

    proto = descriptor_pb2.FileDescriptorProto(name="card.proto", package="shop", syntax="proto3", dependency=["confluent/meta.proto"])
    field = proto.message_type.add(name="Card").field.add(name="number", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    field.options.Extensions[meta_pb2.field_meta].tags.append("PII")
    parsed = protobuf.parse(base64.b64encode(proto.SerializeToString()).decode())
    assert '(confluent.field_meta) = { tags: "PII" }' in parsed.canonical()
    again = protobuf.parse(parsed.canonical())
    fd, meta = _built(again.serialized())
    assert list(fd.message_types_by_name["Card"].fields_by_name["number"].GetOptions().Extensions[meta.field_meta].tags) == ["PII"]
