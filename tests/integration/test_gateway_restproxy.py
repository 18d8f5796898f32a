"""Confluent REST Proxy v3 produce over real HTTP into a real broker."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from riverbed.client import ensure_topics
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

from .gateway_helpers import running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    with EmbeddedBroker(tmp_path_factory.mktemp("gw-rest"), **FIXTURE_DEFAULTS) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        ensure_topics(admin, {"rest": (2, {})})
        cluster_id = admin.list_topics(timeout=10).cluster_id
        with running_gateway({"rest": {"enabled": True}, "gateway": {"max_body": 100_000}}, broker.bootstrap) as (_, url):
            yield broker.bootstrap, f"{url}/v3/clusters/{cluster_id}/topics", cluster_id


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def test_produce_one_record_each_format(proxy: tuple[str, str, str]) -> None:
    bootstrap, base, cluster_id = proxy
    r = httpx.post(base + "/rest/records", json={"partition_id": 1, "headers": [{"name": "h", "value": b64(b"hv")}], "key": {"type": "STRING", "data": "k1"}, "value": {"type": "JSON", "data": {"a": [1, 2]}}, "timestamp": "2026-01-02T03:04:05.000Z"})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["error_code"] == 200 and rep["cluster_id"] == cluster_id and rep["topic_name"] == "rest" and rep["partition_id"] == 1
    assert rep["key"] == {"type": "STRING", "size": 2} and rep["value"] == {"type": "JSON", "size": 11}
    assert rep["timestamp"] == "2026-01-02T03:04:05.000Z"
    r = httpx.post(base + "/rest/records", json={"partition_id": 1, "value": {"type": "BINARY", "data": b64(b"\x00\xff")}})
    assert r.json()["offset"] == rep["offset"] + 1
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rest-check"})
    c.assign([TopicPartition("rest", 1, rep["offset"])])
    got = c.consume(2, 10)
    c.close()
    assert [(m.key(), m.value(), m.headers()) for m in got] == [(b"k1", b'{"a":[1,2]}', [("h", b"hv")]), (None, b"\x00\xff", None)]
    assert got[0].timestamp()[1] == 1767323045000


def test_streamed_mode_one_report_per_record_in_order(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy

    def body() -> Iterator[bytes]:
        for i in range(50):
            yield json.dumps({"partition_id": 0, "value": {"type": "JSON", "data": {"i": i}}}).encode()
        yield b'{"value": {"type": "BINARY", "data": "%%%"}}'  # a bad record gets its own report
        yield b'{"value": {"type": "STRING", "da'
        yield b'ta": "split across chunks"}}'

    r = httpx.post(base + "/rest/records", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    reports = [json.loads(line) for line in r.text.splitlines()]
    assert len(reports) == 52
    offsets = [rep["offset"] for rep in reports[:50]]
    assert offsets == sorted(offsets) and len(set(offsets)) == 50
    assert reports[50]["error_code"] == 400 and "base64" in reports[50]["message"]
    assert reports[51]["error_code"] == 200 and reports[51]["value"] == {"type": "STRING", "size": 19}


def test_batch(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy
    entries = [{"id": str(i), "partition_id": 0, "value": {"type": "STRING", "data": f"b{i}"}} for i in range(3)]
    entries.append({"id": "bad", "value": {"type": "AVRO", "data": {}}})
    r = httpx.post(base + "/rest/records:batch", json={"entries": entries})
    assert r.status_code == 207
    body = r.json()
    assert sorted(s["id"] for s in body["successes"]) == ["0", "1", "2"]
    assert body["failures"] == [{"id": "bad", "error_code": 400, "message": "value type AVRO (schema registry formats) is not supported by this proxy yet"}]
    assert httpx.post(base + "/rest/records:batch", json={"entries": [{"id": "x"}, {"id": "x"}]}).status_code == 400
    assert httpx.post(base + "/rest/records:batch", json={"entries": []}).status_code == 400


def test_errors(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy
    r = httpx.post(base.replace("/clusters/", "/clusters/nope-") + "/rest/records", json={})
    assert r.status_code == 404 and r.json()["error_code"] == 404
    assert httpx.post(base + "/missing-topic/records", json={}).status_code == 404
    assert httpx.post(base + "/rest/records", json={"partition_id": 7, "value": {"type": "STRING", "data": "x"}}).status_code == 404
    assert httpx.post(base + "/rest/records", content=b"{not json").status_code == 400
    assert httpx.post(base + "/rest/records", json={"value": {"type": "XML", "data": "x"}}).status_code == 400
    assert httpx.post(base + "/rest/records", content=b'{"value":{"type":"STRING","data":"' + b"x" * 200_000 + b'"}}').status_code == 413
