"""The console's pure parts: query parsing, JSON paths, filters, decoding of arbitrary bytes,
Confluent's Protobuf message indexes, CloudEvents headers, CSRF form checks."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from riverbed.console.browse import BadQuery, Query, Record, lookup, matches, parse_path
from riverbed.console.decode import Decoded, cloudevent, decode
from riverbed.console.security import CSRF_COOKIE, FormError, csrf_token, read_form


def test_query_defaults_and_bounds() -> None:
    q = Query.parse({})
    assert (q.mode, q.partition, q.limit, q.filtered) == ("latest", None, 50, False)
    q = Query.parse({"mode": "offset", "partition": "2", "offset": "10", "limit": "5", "key": "k"})
    assert (q.mode, q.partition, q.offset, q.limit, q.filtered) == ("offset", 2, 10, 5, True)
    for bad in ({"mode": "sideways"}, {"limit": "0"}, {"limit": "501"}, {"partition": "-1"}, {"offset": "x"}, {"mode": "time", "time": "noon"}, {"json": "a..b"}, {"scan": "1000001"}):
        with pytest.raises(BadQuery):
            Query.parse(bad)
    assert Query(time="2026-12-07T10:00:00Z").timestamp_ms() == 1796637600000
    assert Query(time="2026-12-07T10:00:00").timestamp_ms() == 1796637600000  # naive: UTC


def test_json_paths() -> None:
    assert parse_path("a.b[0].c") == ["a", "b", 0, "c"]
    assert parse_path("$.a") == ["a"] and parse_path("$a[2]") == ["a", 2]
    for bad in ("", "$", "a..b", "a[x]", "a]"):
        with pytest.raises(BadQuery):
            parse_path(bad)
    doc = {"a": {"b": [{"c": 1}, {"c": None}]}}
    assert lookup(doc, ["a", "b", 0, "c"]) == 1
    assert lookup(doc, ["a", "b", 1, "c"]) is None
    missing = lookup(doc, ["a", "b", 5])
    assert missing is lookup(doc, ["x"]) and missing is not None


def _rec(key: str, value: object, headers: list[tuple[str, str]]) -> Record:
    text = json.dumps(value)
    return Record("t", 0, 0, 0, Decoded("text", key, len(key)), Decoded("json", text, len(text), value=value), headers)


def test_filters() -> None:
    r = _rec("order-7", {"user": {"id": 42, "name": "Ann"}, "tags": ["x"]}, [("origin", "web"), ("trace", "abc")])
    yes = [{"key": "order"}, {"header": "origin"}, {"header": "origin=web"}, {"json": "user.id=42"}, {"json": "user.name=Ann"}, {"json": "tags[0]=x"}, {"json": "user"}, {"text": "Ann"}]
    no = [{"key": "order-8"}, {"header": "origin=app"}, {"header": "nope"}, {"json": "user.id=41"}, {"json": "user.age"}, {"json": "tags[1]"}, {"text": "Bob"}]
    for params in yes:
        assert matches(r, Query.parse(params)), params
    for params in no:
        assert not matches(r, Query.parse(params)), params


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_without_raising(data: bytes) -> None:
    d = decode(data, None, 128)
    assert d.kind in ("json", "text", "hex") and d.size == len(data)
    assert d.truncated == (len(data) > 128)
    if d.kind == "hex" and not d.truncated:
        assert bytes.fromhex(d.text.replace("\n", " ")) == data


def test_decode_kinds() -> None:
    assert decode(None, None, 10).kind == "null"
    assert decode(b'{"a": 1}', None, 100).value == {"a": 1}
    assert decode(b"hello", None, 100).kind == "text"
    assert decode(b"\x00\x00\x00\x00\x01\x02", None, 100).kind == "hex"  # wire format, no registry: hex
    big = decode(b"x" * 5000, None, 100)
    assert big.truncated and big.size == 5000 and len(big.text) <= 4096


def test_cloudevents() -> None:
    binary = cloudevent([("ce_specversion", b"1.0"), ("ce_type", b"t"), ("ce_id", b"1"), ("ce_source", b"/s"), ("content-type", b"application/json")], None)
    assert binary is not None and binary.mode == "binary" and binary.attributes["datacontenttype"] == "application/json"
    structured = cloudevent([("content-type", b"application/cloudevents+json; charset=UTF-8")], {"specversion": "1.0", "type": "t", "data": {"x": 1}})
    assert structured is not None and structured.mode == "structured" and "data" not in structured.attributes
    assert cloudevent([("origin", b"x")], {"a": 1}) is None


def _request(body: bytes, cookie: str | None, ctype: str = "application/x-www-form-urlencoded") -> Request:
    headers = [(b"content-type", ctype.encode())]
    if cookie is not None:
        headers.append((b"cookie", f"{CSRF_COOKIE}={cookie}".encode()))
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}, receive)


def test_csrf_forms() -> None:
    token = "a" * 43
    form = asyncio.run(read_form(_request(f"csrf_token={token}&name=x&name=y".encode(), token)))
    assert form["name"] == "x"
    for body, cookie, ctype, status in ((b"name=x", token, "application/x-www-form-urlencoded", 403), (b"csrf_token=" + b"b" * 43, token, "application/x-www-form-urlencoded", 403),
                                        (f"csrf_token={token}".encode(), None, "application/x-www-form-urlencoded", 403), (b"{}", token, "application/json", 415),
                                        (b"x" * 100, token, "application/x-www-form-urlencoded", 413)):
        with pytest.raises(FormError) as e:
            asyncio.run(read_form(_request(body, cookie, ctype), max_bytes=64))
        assert e.value.status == status
    fresh, new = csrf_token(_request(b"", None))
    assert new and len(fresh) >= 32
    assert csrf_token(_request(b"", fresh)) == (fresh, False)
    assert csrf_token(_request(b"", "short"))[1]
