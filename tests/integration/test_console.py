"""The web console over HTTP against a real broker and a real schema registry: real
confluent-kafka clients produce and consume, httpx plays the browser (the Playwright tests in
test_console_browser.py drive a real chromium). Hostile input: XSS in names, records and query
strings, CSRF, path traversal, huge and undecodable records, a broker that goes away."""

from __future__ import annotations

import io
import json
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from riverbed.client import ClusterSettings
from riverbed.console import ConsoleConfig, ConsoleService, wire
from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.testing import FIXTURE_DEFAULTS, BrokerProcess, EmbeddedBroker

pytestmark = pytest.mark.integration

DEADLINE = 20.0


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(**FIXTURE_DEFAULTS) as b:
        yield b


@pytest.fixture(scope="module")
def registry(broker: EmbeddedBroker) -> Iterator[RegistryService]:
    with RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")) as reg:
        yield reg


@pytest.fixture(scope="module")
def console(broker: EmbeddedBroker, registry: RegistryService) -> Iterator[ConsoleService]:
    config = ConsoleConfig(ClusterSettings(broker.bootstrap, registry_url=registry.url), refresh_s=0.3, max_value_bytes=16 * 1024)
    with ConsoleService(config) as svc:
        yield svc


@pytest.fixture
def http(console: ConsoleService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, timeout=30, follow_redirects=False) as c:
        c.get("/")  # the CSRF cookie
        yield c


def token(c: httpx.Client) -> str:
    return str(c.cookies["riverbed_csrf"])


def post(c: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return c.post(path, data={"csrf_token": token(c), **fields})


def wait_for(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def create(c: httpx.Client, topic: str, partitions: int = 1, configs: str = "") -> None:
    r = post(c, "/topics/new", name=topic, partitions=str(partitions), replication="-1", configs=configs)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/topics/{topic}"


def produce(broker: EmbeddedBroker, topic: str, records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]], partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for key, value, headers in records:
        p.produce(topic, value=value, key=key, headers=headers, partition=partition)
    assert p.flush(10) == 0


def records_of(c: httpx.Client, topic: str, **params: str) -> list[dict[str, Any]]:
    r = c.get(f"/topics/{topic}/messages", params={**params, "format": "json"})
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def test_pages_render_and_carry_security_headers(http: httpx.Client) -> None:
    for path in ("/", "/topics", "/topics?internal=1", "/groups", "/schemas", "/acls", "/users", "/transactions", "/topics/new"):
        r = http.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
    cookie = http.get("/", headers={"cookie": ""}).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_topic_create_alter_delete_with_validation_and_confirm(http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic = name()
    create(http, topic, 3, "retention.ms=3600000")
    page = wait_for(lambda: text if topic in (text := http.get("/topics").text) else None, "the new topic in the list")
    row = re.search(rf'<a href="/topics/{topic}">{topic}</a></td>\s*<td class="n">3</td>.*?<td>(.*?)</td>', page, re.S)
    assert row is not None and row.group(1).startswith("1 h")
    assert "<th>Tiered</th>" in page
    # validation: bad names, partitions, configs; the broker's refusal of a duplicate
    for fields, msg in (({"name": "a/../b"}, "Topic names are"), ({"name": ".."}, "Topic names are"), ({"name": "ok", "partitions": "0"}, "partitions must be between"),
                        ({"name": "ok", "configs": "not a config"}, "Config lines are"), ({"name": topic}, "TOPIC_ALREADY_EXISTS")):
        r = post(http, "/topics/new", **{"partitions": "1", "replication": "-1", "configs": "", **fields})
        assert r.status_code == 400 and msg in r.text, (fields, r.text[:300])
    r = post(http, f"/topics/{topic}/alter", set="retention.ms=60000", partitions="4")
    assert r.status_code == 303
    detail = http.get(f"/topics/{topic}").text
    assert detail.count("<tr><td>") >= 4 and '<td>retention.ms</td><td>60000</td>' in detail
    r = post(http, f"/topics/{topic}/alter", set="retention.ms=abc")
    assert r.status_code == 400 and "INVALID_CONFIG" in r.text
    # delete: a confirm page; a wrong name deletes nothing
    assert "Type <code>" in http.get(f"/topics/{topic}/delete").text
    r = post(http, f"/topics/{topic}/delete", confirm="wrong")
    assert r.status_code == 400 and http.get(f"/topics/{topic}").status_code == 200
    assert post(http, f"/topics/{topic}/delete", confirm=topic).status_code == 303
    assert http.get(f"/topics/{topic}").status_code == 404


def test_csrf_is_required_on_every_state_changing_form(http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic = name()
    create(http, topic)
    attempts = [("/topics/new", {"name": name(), "partitions": "1", "replication": "-1"}), (f"/topics/{topic}/alter", {"set": "retention.ms=1"}),
                (f"/topics/{topic}/delete", {"confirm": topic}), (f"/topics/{topic}/produce", {"value": "x"}), ("/groups/g/reset", {"strategy": "earliest"}),
                ("/schemas/s-value", {"action": "register", "schema": '"string"'})]
    for path, fields in attempts:
        for tok in (None, "forged-" + "x" * 40):
            data = dict(fields) if tok is None else {**fields, "csrf_token": tok}
            r = http.post(path, data=data)
            assert r.status_code == 403 and "CSRF" in r.text, (path, tok, r.status_code)
        # a cross-site request carries no cookie of ours: refused too
        with httpx.Client(base_url=str(http.base_url)) as other:
            assert other.post(path, data={**fields, "csrf_token": token(http)}).status_code == 403
    assert http.get(f"/topics/{topic}").status_code == 200
    assert records_of(http, topic, mode="earliest") == []
    # not a form at all
    assert http.post(f"/topics/{topic}/produce", json={"value": "x"}).status_code == 415


def test_hostile_input_is_escaped_and_paths_do_not_traverse(http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic = name()
    create(http, topic)
    xss = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    produce(broker, topic, [(xss.encode(), xss.encode(), [(xss, xss.encode())])])
    page = http.get(f"/topics/{topic}/messages", params={"mode": "earliest", "key": xss, "text": '"><script>'}).text
    assert "<script>alert" not in page and "<img src=x" not in page
    page = http.get(f"/topics/{topic}/messages", params={"mode": "earliest"}).text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and "<script>alert" not in page
    for path in ("/topics", "/groups"):
        r = http.get(path, params={"q": '"><script>alert(1)</script>'})
        assert r.status_code == 200 and "<script>alert(1)" not in r.text and "&#34;&gt;&lt;script&gt;" in r.text
    for path in ("/topics/..%2F..%2Fetc%2Fpasswd", "/topics/%2e%2e", "/static/..%2Fapp.py", "/static/../app.py", "/static/%2e%2e/app.py",
                 "/topics/a%00b/messages", "/topics/" + "x" * 300):
        r = http.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "import" not in r.text and "root:" not in r.text
    assert http.get("/static/console.css").status_code == 200
    r = http.get(f"/topics/{topic}/messages", params={"mode": "nope"})
    assert r.status_code == 400 and "mode must be" in r.text
    r = http.get(f"/topics/{topic}/messages", params={"limit": "1000000", "json": "a..b"})
    assert r.status_code == 400


def test_browser_modes_filters_decoding_and_huge_records(http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic = name()
    create(http, topic, 2)
    huge = b"h" * 100_000
    ce = [("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/shop"), ("ce_type", b"order.created"), ("content-type", b"application/json")]
    produce(broker, topic, [
        (b"alice", json.dumps({"user": {"id": 1}, "items": [{"sku": "a"}]}).encode(), [("origin", b"web")]),
        (b"bob", json.dumps({"user": {"id": 2}, "items": []}).encode(), ce),
        (b"carol", b"\x00\xff\xfe\x01binary", []),
        (b"dave", huge, []),
        (None, None, []),
        (b"erin", b"plain text", [("origin", b"batch")]),
    ])
    produce(broker, topic, [(b"zed", b'{"user": {"id": 3}}', [])], partition=1)
    everything = records_of(http, topic, mode="earliest")
    assert [(r["partition"], r["key"]) for r in everything if r["partition"] == 0] == [(0, "alice"), (0, "bob"), (0, "carol"), (0, "dave"), (0, "null"), (0, "erin")]
    kinds = {r["key"]: r["value_kind"] for r in everything}
    assert kinds == {"alice": "json", "bob": "json", "carol": "hex", "dave": "text", "null": "null", "erin": "text", "zed": "json"}
    carol = next(r for r in everything if r["key"] == "carol")
    assert carol["value"].startswith("00 ff fe 01")
    bob = next(r for r in everything if r["key"] == "bob")
    assert bob["event"] == {"specversion": "1.0", "id": "e1", "source": "/shop", "type": "order.created", "datacontenttype": "application/json"}
    local, remote = wire.storage([broker.bootstrap])[(topic, 0)]  # the Tiered column's source
    assert local > len(huge) and remote is None  # not a tiered topic
    dave = next(r for r in everything if r["key"] == "dave")
    assert dave["truncated"] and dave["value_size"] == len(huge) and len(dave["value"]) < 10_000
    html = http.get(f"/topics/{topic}/messages", params={"mode": "earliest", "key": "dave"}).text
    link = re.search(r'href="(/topics/[^"]+/records/0/3)"', html)
    assert link is not None
    assert http.get(link.group(1)).content == huge
    # filters: key, header (name and name=value), JSON path (exists and equals), text; partition, offset, limit, latest
    assert [r["key"] for r in records_of(http, topic, mode="earliest", key="ali")] == ["alice"]
    assert {r["key"] for r in records_of(http, topic, mode="earliest", header="origin")} == {"alice", "erin"}
    assert [r["key"] for r in records_of(http, topic, mode="earliest", header="origin=batch")] == ["erin"]
    assert [r["key"] for r in records_of(http, topic, mode="earliest", json="user.id=2")] == ["bob"]
    assert [r["key"] for r in records_of(http, topic, mode="earliest", json="$.items[0].sku=a")] == ["alice"]
    assert {r["key"] for r in records_of(http, topic, mode="earliest", json="user.id")} == {"alice", "bob", "zed"}
    assert [r["key"] for r in records_of(http, topic, mode="earliest", text="plain")] == ["erin"]
    assert [r["key"] for r in records_of(http, topic, partition="1")] == ["zed"]
    assert [r["offset"] for r in records_of(http, topic, mode="offset", partition="0", offset="4", limit="5")] == [4, 5]
    assert [r["key"] for r in records_of(http, topic, partition="0", limit="2")] == ["null", "erin"]
    assert records_of(http, topic, mode="time", time="2999-01-01T00:00:00Z") == []
    assert len(records_of(http, topic, mode="time", time="2000-01-01T00:00:00Z")) == 7
    # the filter is the URL: the same query string shows the same rows
    page = http.get(f"/topics/{topic}/messages?mode=earliest&json=user.id%3D2").text
    assert page.count('class="record"') == 1 and "order.created" in page


def test_schema_registry_formats_decode(http: httpx.Client, broker: EmbeddedBroker, registry: RegistryService) -> None:
    topic = name()
    create(http, topic)
    avro = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}]}
    r = post(http, f"/schemas/{topic}-value", action="register", schemaType="AVRO", schema=json.dumps(avro))
    assert r.status_code == 303, r.text
    sr = httpx.get(f"{registry.url}/subjects/{topic}-value/versions/latest").json()
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(avro), {"id": 7, "item": "lamp"})
    avro_bytes = b"\x00" + struct.pack(">I", sr["id"]) + buf.getvalue()
    proto = 'syntax = "proto3";\npackage shop;\nmessage Other { string x = 1; }\nmessage Item { string sku = 1; int32 qty = 2; }\n'
    pr = httpx.post(f"{registry.url}/subjects/{topic}-proto/versions", json={"schema": proto, "schemaType": "PROTOBUF"}).json()
    # the message bytes by hand: index list [1] (Item), field 1 "ab", field 2 = 3
    proto_bytes = b"\x00" + struct.pack(">I", pr["id"]) + b"\x02\x02" + b"\x0a\x02ab\x10\x03"
    js = httpx.post(f"{registry.url}/subjects/{topic}-json/versions", json={"schema": '{"type": "object"}', "schemaType": "JSON"}).json()
    json_bytes = b"\x00" + struct.pack(">I", js["id"]) + b'{"a": 1}'
    bad = b"\x00" + struct.pack(">I", sr["id"]) + b"\xff\xff\xff"
    unknown = b"\x00" + struct.pack(">I", 999_999) + b"xyz"
    produce(broker, topic, [(b"avro", avro_bytes, []), (b"proto", proto_bytes, []), (b"json", json_bytes, []), (b"bad", bad, []), (b"unknown", unknown, [])])
    got = {r["key"]: r for r in records_of(http, topic, mode="earliest")}
    assert got["avro"]["value_kind"] == "avro" and json.loads(got["avro"]["value"]) == {"id": 7, "item": "lamp"}
    assert got["proto"]["value_kind"] == "protobuf" and json.loads(got["proto"]["value"]) == {"sku": "ab", "qty": 3}
    assert got["json"]["value_kind"] == "json-schema" and json.loads(got["json"]["value"]) == {"a": 1}
    assert got["bad"]["value_kind"] == "hex" and got["unknown"]["value_kind"] == "hex"
    assert [r["key"] for r in records_of(http, topic, mode="earliest", json="item=lamp")] == ["avro"]
    # versions, diff, compatibility check
    v2 = {**avro, "fields": [*avro["fields"], {"name": "note", "type": "string", "default": ""}]}
    assert post(http, f"/schemas/{topic}-value", action="register", schemaType="AVRO", schema=json.dumps(v2)).status_code == 303
    page = http.get(f"/schemas/{topic}-value", params={"from": "1", "to": "2"}).text
    assert '<span class="add">+' in page and "note" in page
    bad_v3 = {**avro, "fields": [{"name": "id", "type": "string"}]}
    page = post(http, f"/schemas/{topic}-value", action="check", schemaType="AVRO", schema=json.dumps(bad_v3)).text
    assert 'id="check-result">Not compatible' in page
    page = post(http, f"/schemas/{topic}-value", action="check", schemaType="AVRO", schema=json.dumps(v2)).text
    assert "Compatible with the latest version." in page
    assert f"{topic}-value" in http.get("/schemas").text


def test_group_lag_appears_drops_to_zero_and_offsets_reset_after_a_dry_run(http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic, group = name(), f"g-{uuid.uuid4().hex[:8]}"
    create(http, topic, 2)
    produce(broker, topic, [(b"k", b"v%d" % i, []) for i in range(5)], partition=0)
    produce(broker, topic, [(b"k", b"w%d" % i, []) for i in range(3)], partition=1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
        c.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 0)], asynchronous=False)
        wait_for(lambda: f'{group}: 7</a>' in http.get("/topics").text, "lag 7 in the topic list")
        assert re.search(rf'>{group}</a></td><td>classic</td><td>\w+</td><td class="n">\d+</td><td>{topic}</td><td class="n lagging">7</td>', http.get("/groups").text)
        c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 3)], asynchronous=False)
        wait_for(lambda: f'{group}: 0</a>' in http.get("/topics").text, "lag 0 in the topic list")
    finally:
        c.close()
    page = http.get(f"/groups/{group}").text
    assert 'id="group-lag">0<' in page and "<polyline" in page
    # dry run: a plan, nothing changed
    r = post(http, f"/groups/{group}/reset", topic=topic, strategy="earliest", value="")
    assert r.status_code == 200 and 'id="reset-plan"' in r.text and "Execute this reset" in r.text
    assert 'id="group-lag">0<' in http.get(f"/groups/{group}").text
    r = post(http, f"/groups/{group}/reset", topic=topic, strategy="offset", value="2", execute="1")
    assert r.status_code == 303 and r.headers["location"] == f"/groups/{group}?reset=done"
    page = http.get(f"/groups/{group}").text
    assert 'id="group-lag">4<' in page  # partition 0: 5-2, partition 1: 3-2
    # a viewed group keeps a lag history per partition: a line per partition once two refreshes are in
    wait_for(lambda: all(f'aria-label="lag of partition {p} over time"' in http.get(f"/groups/{group}").text for p in (0, 1)), "per-partition lag lines")
    for fields in ({"strategy": "sideways"}, {"strategy": "offset", "value": "x"}, {"strategy": "datetime", "value": "yesterday"}, {"strategy": "earliest", "topic": "nope"}):
        assert post(http, f"/groups/{group}/reset", **fields).status_code == 400


def test_reset_is_refused_while_the_group_has_members(http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic, group = name(), f"g-{uuid.uuid4().hex[:8]}"
    create(http, topic)
    produce(broker, topic, [(None, b"x", [])])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        wait_for(lambda: (m := c.poll(0.2)) is not None and m.error() is None and c.commit(m, asynchronous=False) is not None, "a record")
        r = post(http, f"/groups/{group}/reset", topic=topic, strategy="earliest", value="", execute="1")
        assert r.status_code == 200 and "stop its consumers" in r.text and "Execute this reset" not in r.text
        page = http.get(f"/groups/{group}").text
        assert "rdkafka" in page and f"{topic}-0" in page  # the member and its assignment
    finally:
        c.close()


def test_live_tail_streams_new_records(console: ConsoleService, http: httpx.Client, broker: EmbeddedBroker) -> None:
    topic = name()
    create(http, topic)
    produce(broker, topic, [(b"old", b"before", [])])
    with httpx.Client(base_url=console.url, timeout=30) as c, c.stream("GET", f"/topics/{topic}/tail/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        assert wait_for(lambda: next(lines) == "event: ready", "ready")
        produce(broker, topic, [(b"new", b"after", [])])
        data = wait_for(lambda: (line := next(lines)).startswith("data: {\"") and line, "a record")
        rec = json.loads(data[len("data: "):])
        assert (rec["key"], rec["value"]) == ("new", "after")
    assert "tail/stream" in http.get(f"/topics/{topic}/tail").text


def test_lists_acls_users_transactions(http: httpx.Client, broker: EmbeddedBroker) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "console-txn"})
    p.init_transactions(10)
    try:
        wait_for(lambda: "console-txn" in http.get("/transactions").text, "the transactional id")
    finally:
        p.flush(1)
    assert http.get("/acls").status_code == 200 and http.get("/users").status_code == 200


def test_broker_down_shows_a_banner_and_recovers(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "data").start()
    try:
        with ConsoleService(ConsoleConfig(ClusterSettings(proc.bootstrap), refresh_s=0.3, request_timeout_s=1.0)) as svc, httpx.Client(base_url=svc.url, timeout=30) as c:
            wait_for(lambda: c.get("/health").json()["cluster"] == "up", "the cluster up")
            proc.kill()
            wait_for(lambda: c.get("/health").json()["cluster"] == "down", "the cluster down", 30)
            for path in ("/", "/topics", "/groups"):
                r = c.get(path)
                assert r.status_code == 200 and 'id="cluster-down"' in r.text and "Retrying every" in r.text
            r = c.get("/topics/whatever")
            assert r.status_code == 503 and "Cannot read topic" in r.text
            proc.start()
            wait_for(lambda: c.get("/health").json()["cluster"] == "up", "the cluster back", 40)
            assert 'id="cluster-down"' not in c.get("/topics").text
    finally:
        proc.terminate()


def test_metrics_endpoint(http: httpx.Client) -> None:
    http.get("/topics")
    r = http.get("/metrics")
    assert r.status_code == 200
    from prometheus_client.parser import text_string_to_metric_families

    served = {(s.labels["endpoint"], s.labels["status"]): s.value for f in text_string_to_metric_families(r.text) for s in f.samples
              if s.name == "riverbed_http_requests_total" and s.labels.get("service") == "console"}
    assert any(status == "200" and value >= 1 for (_endpoint, status), value in served.items()), served
