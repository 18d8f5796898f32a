"""Confluent REST Proxy v3 produce over real HTTP into a real broker."""

from __future__ import annotations

import base64
import json
import time
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
        with running_gateway(
            {"rest": {"enabled": True}, "gateway": {"max_body": 100_000}}, broker.bootstrap
        ) as (_, url):
            yield broker.bootstrap, f"{url}/v3/clusters/{cluster_id}/topics", cluster_id


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def test_produce_one_record_each_format(proxy: tuple[str, str, str]) -> None:
    bootstrap, base, cluster_id = proxy
    r = httpx.post(
        base + "/rest/records",
        json={
            "partition_id": 1,
            "headers": [{"name": "h", "value": b64(b"hv")}],
            "key": {"type": "STRING", "data": "k1"},
            "value": {"type": "JSON", "data": {"a": [1, 2]}},
            "timestamp": "2026-01-02T03:04:05.000Z",
        },
    )
    assert r.status_code == 200, r.text
    rep = r.json()
    assert (
        rep["error_code"] == 200
        and rep["cluster_id"] == cluster_id
        and rep["topic_name"] == "rest"
        and rep["partition_id"] == 1
    )
    assert rep["key"] == {"type": "STRING", "size": 2} and rep["value"] == {
        "type": "JSON",
        "size": 11,
    }
    assert rep["timestamp"] == "2026-01-02T03:04:05.000Z"
    r = httpx.post(
        base + "/rest/records",
        json={"partition_id": 1, "value": {"type": "BINARY", "data": b64(b"\x00\xff")}},
    )
    assert r.json()["offset"] == rep["offset"] + 1
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rest-check"})
    c.assign([TopicPartition("rest", 1, rep["offset"])])
    got = c.consume(2, 10)
    c.close()
    assert [(m.key(), m.value(), m.headers()) for m in got] == [
        (b"k1", b'{"a":[1,2]}', [("h", b"hv")]),
        (None, b"\x00\xff", None),
    ]
    assert got[0].timestamp()[1] == 1767323045000


def test_streamed_mode_one_report_per_record_in_order(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy

    def body() -> Iterator[bytes]:
        for i in range(50):
            yield json.dumps(
                {"partition_id": 0, "value": {"type": "JSON", "data": {"i": i}}}
            ).encode()
        yield b'{"value": {"type": "BINARY", "data": "%%%"}}'  # a bad record gets its own report
        yield b'{"value": {"type": "STRING", "da'
        yield b'ta": "split across chunks"}}'

    r = httpx.post(
        base + "/rest/records", content=body(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200
    reports = [json.loads(line) for line in r.text.splitlines()]
    assert len(reports) == 52
    offsets = [rep["offset"] for rep in reports[:50]]
    assert offsets == sorted(offsets) and len(set(offsets)) == 50
    assert reports[50]["error_code"] == 400 and "base64" in reports[50]["message"]
    assert reports[51]["error_code"] == 200 and reports[51]["value"] == {
        "type": "STRING",
        "size": 19,
    }


def test_batch(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy
    entries = [
        {"id": str(i), "partition_id": 0, "value": {"type": "STRING", "data": f"b{i}"}}
        for i in range(3)
    ]
    entries.append({"id": "bad", "value": {"type": "AVRO", "data": {}}})
    r = httpx.post(base + "/rest/records:batch", json={"entries": entries})
    assert r.status_code == 207
    body = r.json()
    assert sorted(s["id"] for s in body["successes"]) == ["0", "1", "2"]
    assert body["failures"] == [
        {
            "id": "bad",
            "error_code": 400,
            "message": "value: This proxy has no schema registry for AVRO, PROTOBUF and JSONSCHEMA: set [cluster] schema.registry.url (or RIVERBED_REGISTRY_URL)",
        }
    ]
    assert (
        httpx.post(
            base + "/rest/records:batch", json={"entries": [{"id": "x"}, {"id": "x"}]}
        ).status_code
        == 400
    )
    assert httpx.post(base + "/rest/records:batch", json={"entries": []}).status_code == 400


def test_errors(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy
    r = httpx.post(base.replace("/clusters/", "/clusters/nope-") + "/rest/records", json={})
    assert r.status_code == 404 and r.json()["error_code"] == 404
    assert httpx.post(base + "/missing-topic/records", json={}).status_code == 404
    assert (
        httpx.post(
            base + "/rest/records",
            json={"partition_id": 7, "value": {"type": "STRING", "data": "x"}},
        ).status_code
        == 404
    )
    assert httpx.post(base + "/rest/records", content=b"{not json").status_code == 400
    assert (
        httpx.post(base + "/rest/records", json={"value": {"type": "XML", "data": "x"}}).status_code
        == 400
    )
    assert (
        httpx.post(
            base + "/rest/records",
            content=b'{"value":{"type":"STRING","data":"' + b"x" * 200_000 + b'"}}',
        ).status_code
        == 413
    )


V2_JSON = "application/vnd.kafka.json.v2+json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"


def test_v2_produce_and_consume_with_a_consumer_instance(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy
    root = base.split("/v3/")[0]
    r = httpx.post(
        root + "/topics/rest",
        content=json.dumps(
            {"records": [{"key": "k", "value": {"n": i}, "partition": 0} for i in range(3)]}
        ),
        headers={"Content-Type": V2_JSON},
    )
    assert r.status_code == 200, r.text
    offsets = r.json()["offsets"]
    assert [o["partition"] for o in offsets] == [0, 0, 0] and offsets[2]["offset"] == offsets[0][
        "offset"
    ] + 2
    assert r.json()["key_schema_id"] is None and r.headers["content-type"].startswith(
        "application/vnd.kafka.v2+json"
    )
    r = httpx.post(
        root + "/topics/rest/partitions/1",
        content=json.dumps({"records": [{"value": b64(b"\x01\x02")}]}),
        headers={"Content-Type": V2_BINARY},
    )
    assert r.json()["offsets"][0]["partition"] == 1

    c = root + "/consumers/rest-group"
    r = httpx.post(
        c,
        json={"name": "c1", "format": "json", "auto.offset.reset": "earliest"},
        headers={"Content-Type": "application/vnd.kafka.v2+json"},
    )
    assert r.status_code == 200 and r.json()["instance_id"] == "c1"
    inst = r.json()["base_uri"]
    assert httpx.post(c, json={"name": "c1", "format": "json"}).status_code == 409
    assert httpx.post(inst + "/subscription", json={"topics": ["rest"]}).status_code == 204
    assert httpx.get(inst + "/subscription").json() == {"topics": ["rest"]}
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + 20
    while (
        not any(isinstance(rec["value"], dict) and rec["value"].get("n") == 2 for rec in got)
        and time.monotonic() < deadline
    ):
        r = httpx.get(inst + "/records?timeout=500", headers={"Accept": V2_JSON})
        assert r.status_code == 200
        got += r.json()
    mine = [
        rec
        for rec in got
        if rec["partition"] == 0 and isinstance(rec["value"], dict) and "n" in rec["value"]
    ]
    assert [rec["value"] for rec in mine][-3:] == [{"n": 0}, {"n": 1}, {"n": 2}] and mine[-1][
        "key"
    ] == "k"
    assert httpx.get(inst + "/records", headers={"Accept": V2_BINARY}).status_code == 406
    last = mine[-1]
    assert (
        httpx.post(
            inst + "/offsets",
            json={"offsets": [{"topic": "rest", "partition": 0, "offset": last["offset"]}]},
        ).status_code
        == 200
    )
    r = httpx.request(
        "GET", inst + "/offsets", json={"partitions": [{"topic": "rest", "partition": 0}]}
    )
    assert r.json()["offsets"][0]["offset"] == int(str(last["offset"])) + 1
    assert httpx.delete(inst).status_code == 204
    r = httpx.get(inst + "/records", headers={"Accept": V2_JSON})
    assert r.status_code == 404 and r.json()["error_code"] == 40403


def test_v2_errors(proxy: tuple[str, str, str]) -> None:
    _, base, _ = proxy
    root = base.split("/v3/")[0]
    r = httpx.post(
        root + "/topics/nope",
        content=b'{"records":[{"value":1}]}',
        headers={"Content-Type": V2_JSON},
    )
    assert r.status_code == 404 and r.json()["error_code"] == 40401
    r = httpx.post(
        root + "/topics/rest/partitions/9",
        content=b'{"records":[{"value":1}]}',
        headers={"Content-Type": V2_JSON},
    )
    assert r.json()["error_code"] == 40402
    assert (
        httpx.post(
            root + "/topics/rest",
            content=b'{"records":[{"value":"%%"}]}',
            headers={"Content-Type": V2_BINARY},
        ).status_code
        == 422
    )
    r = httpx.post(
        root + "/topics/rest",
        content=b'{"records":[{"value":1}]}',
        headers={"Content-Type": "application/vnd.kafka.avro.v2+json"},
    )
    assert r.status_code == 422 and r.json()["error_code"] == 42202
    assert r.headers["content-type"].startswith("application/vnd.kafka.v2+json")
    r = httpx.post(
        root + "/topics/rest",
        content=b'{"records":[{"value":1}]}',
        headers={"Content-Type": "application/vnd.kafka.xml.v2+json"},
    )
    assert r.status_code == 415
    r = httpx.post(root + "/consumers/g", json={"format": "xml"})
    assert r.status_code == 422 and r.json()["error_code"] == 42204


def _read_until(
    inst: str, accept: str, done: object, timeout: float = 20
) -> list[dict[str, object]]:
    """GET .../records until done(records so far) (a deadline, never a fixed sleep)."""
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(inst + "/records?timeout=300", headers={"Accept": accept})
        assert r.status_code == 200, r.text
        got += r.json()
        if done(got):  # type: ignore[operator]
            return got
    raise AssertionError(f"timed out; read {got}")


def test_v2_metadata_endpoints(proxy: tuple[str, str, str]) -> None:
    bootstrap, base, _ = proxy
    root = base.split("/v3/")[0]
    ensure_topics(
        AdminClient({"bootstrap.servers": bootstrap}), {"meta": (2, {"retention.ms": "3600000"})}
    )
    r = httpx.get(root + "/topics")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/vnd.kafka.v2+json"
    )
    assert {"rest", "meta"} <= set(r.json()) and not any(n.startswith("__") for n in r.json())
    t = httpx.get(root + "/topics/meta").json()
    assert t["name"] == "meta" and t["configs"]["retention.ms"] == "3600000"
    assert [p["partition"] for p in t["partitions"]] == [0, 1]
    leader = t["partitions"][0]["leader"]
    assert t["partitions"][0]["replicas"] == [{"broker": leader, "leader": True, "in_sync": True}]
    assert httpx.get(root + "/topics/meta/partitions").json() == t["partitions"]
    assert httpx.get(root + "/topics/meta/partitions/1").json() == t["partitions"][1]
    assert httpx.get(root + "/brokers").json() == {"brokers": [leader]}
    httpx.post(
        root + "/topics/meta/partitions/1",
        content=json.dumps({"records": [{"value": i} for i in range(3)]}),
        headers={"Content-Type": V2_JSON},
    ).raise_for_status()
    assert httpx.get(root + "/topics/meta/partitions/1/offsets").json() == {
        "beginning_offset": 0,
        "end_offset": 3,
    }
    for path, code in (
        ("/topics/nope", 40401),
        ("/topics/nope/partitions", 40401),
        ("/topics/meta/partitions/5", 40402),
        ("/topics/meta/partitions/5/offsets", 40402),
    ):
        r = httpx.get(root + path)
        assert r.status_code == 404 and r.json()["error_code"] == code, path
        assert r.headers["content-type"].startswith("application/vnd.kafka.v2+json")


def test_v2_assignments_and_positions(proxy: tuple[str, str, str]) -> None:
    bootstrap, base, _ = proxy
    root = base.split("/v3/")[0]
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), {"seek": (2, {})})
    httpx.post(
        root + "/topics/seek/partitions/0",
        content=json.dumps({"records": [{"value": {"n": i}} for i in range(5)]}),
        headers={"Content-Type": V2_JSON},
    ).raise_for_status()
    r = httpx.post(
        root + "/consumers/seek-group",
        json={"name": "s1", "format": "json", "auto.offset.reset": "earliest"},
    )
    inst = r.json()["base_uri"]
    assert httpx.get(inst + "/assignments").json() == {"partitions": []}
    r = httpx.post(inst + "/assignments", json={"partitions": [{"topic": "seek", "partition": 0}]})
    assert r.status_code == 204, r.text
    assert httpx.get(inst + "/assignments").json() == {
        "partitions": [{"topic": "seek", "partition": 0}]
    }
    r = httpx.post(inst + "/subscription", json={"topics": ["seek"]})
    assert r.status_code == 409 and r.json()["error_code"] == 40903

    def offsets(recs: list[dict[str, object]]) -> list[object]:
        return [rec["offset"] for rec in recs]

    assert offsets(_read_until(inst, V2_JSON, lambda g: len(g) >= 5)) == [0, 1, 2, 3, 4]
    assert (
        httpx.post(
            inst + "/positions", json={"offsets": [{"topic": "seek", "partition": 0, "offset": 3}]}
        ).status_code
        == 204
    )
    assert offsets(_read_until(inst, V2_JSON, lambda g: len(g) >= 2)) == [3, 4]
    assert (
        httpx.post(
            inst + "/positions/beginning", json={"partitions": [{"topic": "seek", "partition": 0}]}
        ).status_code
        == 204
    )
    got = _read_until(inst, V2_JSON, lambda g: len(g) >= 5)
    assert offsets(got) == [0, 1, 2, 3, 4] and got[0]["value"] == {"n": 0}
    assert (
        httpx.post(
            inst + "/positions/end", json={"partitions": [{"topic": "seek", "partition": 0}]}
        ).status_code
        == 204
    )
    httpx.post(
        root + "/topics/seek/partitions/0",
        content=json.dumps({"records": [{"value": "new"}]}),
        headers={"Content-Type": V2_JSON},
    ).raise_for_status()
    assert offsets(_read_until(inst, V2_JSON, lambda g: len(g) >= 1)) == [5]
    r = httpx.post(
        inst + "/positions", json={"offsets": [{"topic": "seek", "partition": 1, "offset": 0}]}
    )
    assert r.status_code == 409 and r.json()["error_code"] == 40903
    r = httpx.post(inst + "/assignments", json={"partitions": [{"topic": "seek", "partition": 7}]})
    assert r.status_code == 404 and r.json()["error_code"] == 40402
    assert httpx.delete(inst).status_code == 204

    # a subscribed instance seeks within what the group gave it
    r = httpx.post(
        root + "/consumers/seek-group2",
        json={"name": "s2", "format": "json", "auto.offset.reset": "earliest"},
    )
    inst = r.json()["base_uri"]
    assert httpx.post(inst + "/subscription", json={"topics": ["seek"]}).status_code == 204
    assert len(_read_until(inst, V2_JSON, lambda g: len(g) >= 6)) == 6
    assert (
        httpx.post(
            inst + "/positions", json={"offsets": [{"topic": "seek", "partition": 0, "offset": 4}]}
        ).status_code
        == 204
    )
    assert offsets(_read_until(inst, V2_JSON, lambda g: len(g) >= 2)) == [4, 5]
    r = httpx.post(inst + "/assignments", json={"partitions": [{"topic": "seek", "partition": 0}]})
    assert r.status_code == 409 and r.json()["error_code"] == 40903
    assert httpx.delete(inst).status_code == 204
