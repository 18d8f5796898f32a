"""Webhooks in over real HTTP into a real broker: signatures, replays, CloudEvents, errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from riverbed.gateway import sign_github, sign_hmac, sign_standard, sign_stripe
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker, free_port

from .gateway_helpers import read_topic, running_gateway

pytestmark = pytest.mark.integration

STD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROUTES: dict[str, Any] = {
    "gateway": {"max_body": 4096},
    "auth": {"key": "inbound-test-key-inbound-test-key-123"},
    "webhooks": {
        "in": [
            {"path": "/hooks/stripe", "topic": "payments.stripe", "verify": "stripe", "secret": "whsec_stripe", "key": "data.object.customer", "tolerance": 300},
            {"path": "/hooks/github", "topic": "code.github", "verify": "github", "secret": "gh-secret", "headers": ["X-GitHub-Event"]},
            {"path": "/hooks/std", "topic": "std.events", "verify": "standard-webhooks", "secret": STD},
            {"path": "/hooks/hmac", "topic": "hmac.events", "verify": "hmac-sha256", "secret": "s3", "signature_header": "X-Shop-Hmac", "signature_encoding": "base64", "id": "order.id"},
            {"path": "/hooks/ce", "topic": "ce.events", "key": "user"},
            {"path": "/hooks/wrap", "topic": "wrap.events", "cloudevents": "binary", "ce_type": "com.example.shop.order", "ce_source": "/shop", "id": "orderId", "key": "user"},
            {"path": "/hooks/limited", "topic": "limited.events", "rate_limit": 1, "burst": 2},
            {"path": "/api/cart", "topic": "cart.events", "auth": "jwt"},
        ]
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with EmbeddedBroker(tmp_path_factory.mktemp("gw-in"), **FIXTURE_DEFAULTS) as broker, running_gateway(ROUTES, broker.bootstrap) as (_, url):
        yield broker.bootstrap, url


def stripe_event(event_id: str, customer: str = "cus_1") -> bytes:
    return json.dumps({"id": event_id, "type": "payment_intent.succeeded", "data": {"object": {"customer": customer, "amount": 4200}}}).encode()


def test_stripe_event_lands_once_under_provider_retries(gateway: tuple[str, str]) -> None:
    bootstrap, url = gateway
    body = stripe_event("evt_once")
    # the provider retries: sequentially (each with a fresh timestamp), and concurrently
    answers = []
    for _ in range(3):
        answers.append(httpx.post(url + "/hooks/stripe", content=body, headers={"Stripe-Signature": sign_stripe(body, "whsec_stripe"), "Content-Type": "application/json"}))
    with ThreadPoolExecutor(8) as pool:
        answers += list(pool.map(lambda _: httpx.post(url + "/hooks/stripe", content=body, headers={"Stripe-Signature": sign_stripe(body, "whsec_stripe")}), range(8)))
    assert [a.status_code for a in answers] == [202] * 11
    assert len({a.json()["offset"] for a in answers}) == 1
    assert sum(not a.json().get("duplicate") for a in answers) == 1
    records = read_topic(bootstrap, "payments.stripe", 1, settle=0.5)
    mine = [m for m in records if dict(m.headers())["riverbed.gateway.id"] == b"evt_once"]
    assert len(mine) == 1
    assert mine[0].key() == b"cus_1" and json.loads(mine[0].value())["id"] == "evt_once"


def test_bad_signatures_and_stale_timestamps_get_401_and_nothing_lands(gateway: tuple[str, str]) -> None:
    bootstrap, url = gateway
    body = stripe_event("evt_bad")
    cases = [
        {},
        {"Stripe-Signature": sign_stripe(body, "whsec_wrong")},
        {"Stripe-Signature": sign_stripe(body, "whsec_stripe", int(time.time()) - 3600)},
        {"Stripe-Signature": "garbage"},
    ]
    for headers in cases:
        r = httpx.post(url + "/hooks/stripe", content=body, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error_code"] == 401 and "whsec_stripe" not in r.text
    r = httpx.post(url + "/hooks/github", content=b"{}", headers={"X-Hub-Signature-256": sign_github(b"{}", "nope")})
    assert r.status_code == 401
    records = read_topic(bootstrap, "payments.stripe", 0, settle=0.3)
    assert all(dict(m.headers())["riverbed.gateway.id"] != b"evt_bad" for m in records)


def test_github_standard_and_hmac_schemes(gateway: tuple[str, str]) -> None:
    bootstrap, url = gateway
    body = b'{"action":"opened","number":7}'
    gh = {"X-Hub-Signature-256": sign_github(body, "gh-secret"), "X-GitHub-Delivery": "d-77", "X-GitHub-Event": "pull_request", "Content-Type": "application/json"}
    assert httpx.post(url + "/hooks/github", content=body, headers=gh).status_code == 202
    assert httpx.post(url + "/hooks/github", content=body, headers=gh).json()["duplicate"] is True
    (m,) = read_topic(bootstrap, "code.github", 1, settle=0.3)
    assert dict(m.headers()) == {"content-type": b"application/json", "x-github-event": b"pull_request", "riverbed.gateway.id": b"d-77"}

    std_body = b'{"type":"invoice.paid"}'
    std = sign_standard("msg_42", std_body, STD)
    assert httpx.post(url + "/hooks/std", content=std_body, headers=std).status_code == 202
    assert httpx.post(url + "/hooks/std", content=std_body, headers={**std, "webhook-id": "msg_43"}).status_code == 401  # the id is signed
    stale = sign_standard("msg_44", std_body, STD, int(time.time()) - 400)
    assert httpx.post(url + "/hooks/std", content=std_body, headers=stale).status_code == 401

    hm_body = b'{"order":{"id":991}}'
    hm = {"X-Shop-Hmac": sign_hmac(hm_body, "s3", encoding="base64")}
    assert httpx.post(url + "/hooks/hmac", content=hm_body, headers=hm).json()["id"] == "991"
    assert httpx.post(url + "/hooks/hmac", content=hm_body, headers=hm).json()["duplicate"] is True
    assert len(read_topic(bootstrap, "hmac.events", 1, settle=0.3)) == 1


def test_cloudevents_binary_structured_and_wrapped(gateway: tuple[str, str]) -> None:
    bootstrap, url = gateway
    binary = {"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/orders", "ce-type": "order.created", "ce-partitionkey": "u-1", "Content-Type": "application/json"}
    assert httpx.post(url + "/hooks/ce", content=b'{"total":3}', headers=binary).status_code == 202
    structured = {"specversion": "1.0", "id": "e2", "source": "/orders", "type": "order.paid", "data": {"user": "u-2"}}
    r = httpx.post(url + "/hooks/ce", content=json.dumps(structured).encode(), headers={"Content-Type": "application/cloudevents+json; charset=UTF-8"})
    assert r.status_code == 202
    assert httpx.post(url + "/hooks/ce", content=b"{}", headers={**binary, "ce-id": ""}).status_code == 400
    a, b = read_topic(bootstrap, "ce.events", 2, settle=0.3)
    ha = dict(a.headers())
    assert a.key() == b"u-1" and ha["ce_id"] == b"e1" and ha["ce_type"] == b"order.created" and ha["content-type"] == b"application/json"
    assert "ce_partitionkey" not in ha and a.value() == b'{"total":3}'
    assert dict(b.headers())["content-type"].startswith(b"application/cloudevents+json") and json.loads(b.value())["id"] == "e2"

    r = httpx.post(url + "/hooks/wrap", content=b'{"orderId":"o-9","user":"u-3"}')
    assert r.status_code == 202
    (w,) = read_topic(bootstrap, "wrap.events", 1)
    hw = dict(w.headers())
    assert w.key() == b"u-3" and hw["ce_id"] == b"o-9" and hw["ce_type"] == b"com.example.shop.order" and hw["ce_specversion"] == b"1.0"


def test_bad_input_answers(gateway: tuple[str, str]) -> None:
    _, url = gateway
    big = b'{"x":"' + b"a" * 5000 + b'"}'
    assert httpx.post(url + "/hooks/ce", content=big).status_code == 413
    r = httpx.post(url + "/hooks/ce", content=b"not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    assert httpx.post(url + "/hooks/ce", content=b"").status_code == 400
    r = httpx.post(url + "/hooks/nowhere", content=b"{}")
    assert r.status_code == 404 and r.json()["error_code"] == 404
    assert httpx.get(url + "/hooks/ce").status_code == 405
    codes = [httpx.post(url + "/hooks/limited", content=b"{}").status_code for _ in range(4)]
    assert codes[:2] == [202, 202] and 429 in codes[2:]
    r = httpx.post(url + "/hooks/limited", content=b"{}")
    if r.status_code == 429:
        assert int(r.headers["Retry-After"]) >= 1
    health = httpx.get(url + "/health").json()
    assert health["status"] == "up"  # still serving
    accepted = health["inbound"]["/hooks/limited"]["accepted"]
    assert accepted in (2, 3)
    assert f'riverbed_gateway_webhooks_accepted_total{{path="/hooks/limited"}} {accepted}.0' in httpx.get(url + "/metrics").text


def test_broker_down_is_503_with_retry_after() -> None:
    doc = {"gateway": {"delivery_timeout_ms": 500, "create_topics": False}, "webhooks": {"in": [{"path": "/h", "topic": "t", "dedup_window": 0}]}}
    with running_gateway(doc, f"127.0.0.1:{free_port()}") as (_, url):
        r = httpx.post(url + "/h", content=b'{"a":1}', timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert "not stored" in r.json()["message"]


def test_restarted_gateway_still_recognises_a_retry(gateway: tuple[str, str]) -> None:
    bootstrap, url = gateway
    body = stripe_event("evt_restart")
    headers = {"Stripe-Signature": sign_stripe(body, "whsec_stripe")}
    assert httpx.post(url + "/hooks/stripe", content=body, headers=headers).status_code == 202
    # a second gateway process reads recent ids back from the topic at start
    with running_gateway(ROUTES, bootstrap) as (_, url2):
        r = httpx.post(url2 + "/hooks/stripe", content=body, headers={"Stripe-Signature": sign_stripe(body, "whsec_stripe")})
        assert r.status_code == 202 and r.json()["duplicate"] is True


def test_bearer_token_route_keys_records_by_user(gateway: tuple[str, str]) -> None:
    import jwt

    bootstrap, url = gateway
    assert httpx.post(url + "/api/cart", content=b"{}").status_code == 401
    bad = jwt.encode({"sub": "u"}, "some-other-key-some-other-key-1234", algorithm="HS256")
    assert httpx.post(url + "/api/cart", content=b"{}", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    good = jwt.encode({"sub": "u-42"}, "inbound-test-key-inbound-test-key-123", algorithm="HS256")
    assert httpx.post(url + "/api/cart", content=b'{"sku":"a"}', headers={"Authorization": f"Bearer {good}"}).status_code == 202
    (m,) = read_topic(bootstrap, "cart.events", 1, settle=0.3)
    assert m.key() == b"u-42" and dict(m.headers())["riverbed.gateway.user"] == b"u-42"


def test_two_instances_sharing_ids_in_redis_store_an_event_once(gateway: tuple[str, str]) -> None:
    from riverbed.testing.servers import RedisServer

    bootstrap, _ = gateway
    route = {"path": "/hooks/stripe", "topic": "payments.shared", "verify": "stripe", "secret": "whsec_stripe"}
    with RedisServer() as redis:
        doc = {"webhooks": {"in": [{**route, "dedup_redis": redis.url}]}}
        with running_gateway(doc, bootstrap) as (_, url1), running_gateway(doc, bootstrap) as (_, url2):
            body = stripe_event("evt_shared")

            def post(url: str) -> httpx.Response:
                return httpx.post(url + "/hooks/stripe", content=body, headers={"Stripe-Signature": sign_stripe(body, "whsec_stripe")}, timeout=20)

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(post, [url1, url2] * 4))
            answers += [post(url1), post(url2)]
            assert [a.status_code for a in answers] == [202] * 10
            assert sum(not a.json().get("duplicate") for a in answers) == 1
            assert len({a.json()["offset"] for a in answers}) == 1
            records = read_topic(bootstrap, "payments.shared", 1, settle=0.5)
            assert [dict(m.headers())["riverbed.gateway.id"] for m in records] == [b"evt_shared"]
        # the store is down: an instance cannot know, so it does not acknowledge
        redis.close()
        with running_gateway(doc, bootstrap) as (_, url3):
            other = stripe_event("evt_no_redis")
            r = httpx.post(url3 + "/hooks/stripe", content=other, headers={"Stripe-Signature": sign_stripe(other, "whsec_stripe")}, timeout=20)
            assert r.status_code == 503 and "Retry-After" in r.headers


def test_cloudevents_sdk_over_http_in_and_kafka_out(gateway: tuple[str, str]) -> None:
    """The official CloudEvents SDK writes the HTTP request (both modes) and reads the Kafka
    record the gateway produced."""
    sdk_http = pytest.importorskip("cloudevents.v1.http")
    sdk_kafka = pytest.importorskip("cloudevents.v1.kafka")
    from cloudevents.v1.conversion import to_binary as http_binary
    from cloudevents.v1.conversion import to_structured as http_structured

    bootstrap, url = gateway
    before = len(read_topic(bootstrap, "ce.events", 0, settle=0.3))
    events = [sdk_http.CloudEvent({"type": "com.example.sdk", "source": "/sdk", "partitionkey": "u-7", "datacontenttype": "application/json"}, {"i": i}) for i in range(2)]
    for event, convert in zip(events, (http_binary, http_structured), strict=True):
        headers, body = convert(event)
        r = httpx.post(url + "/hooks/ce", content=body, headers=headers)
        assert r.status_code == 202, r.text
    got = read_topic(bootstrap, "ce.events", before + 2)[before:]
    assert len(got) == 2
    binary = sdk_kafka.from_binary(sdk_kafka.KafkaMessage(dict(got[0].headers() or []), got[0].key(), got[0].value()))
    structured = sdk_kafka.from_structured(sdk_kafka.KafkaMessage(dict(got[1].headers() or []), got[1].key(), got[1].value()))
    assert [binary["id"], structured["id"]] == [e["id"] for e in events]
    assert binary.get_data() == {"i": 0} and structured.get_data() == {"i": 1}
    assert [m.key() for m in got] == [b"u-7", b"u-7"]  # partitionkey is the record key


def test_chunked_bodies_are_read_whole_and_limited(gateway: tuple[str, str]) -> None:
    """A body without Content-Length (chunked) is read across ASGI messages and still limited."""
    bootstrap, url = gateway

    def body(pads: int) -> Iterator[bytes]:  # a generator: httpx sends it chunked
        yield b'{"user":"u-chunked","pad":"'
        for _ in range(pads):
            yield b"a" * 100
        yield b'"}'

    r = httpx.post(url + "/hooks/ce", content=body(30))
    assert r.status_code == 202, r.text
    assert r.headers["content-type"] == "application/json"
    offset = r.json()["offset"]
    r = httpx.post(url + "/hooks/ce", content=body(60))  # 6,000 bytes > max_body 4096
    assert r.status_code == 413 and r.json()["error_code"] == 413
    mine = [m for m in read_topic(bootstrap, "ce.events", offset + 1) if m.offset() == offset]
    assert mine[0].key() == b"u-chunked" and json.loads(mine[0].value())["pad"] == "a" * 3000


def test_carried_headers_match_names_in_any_case(gateway: tuple[str, str]) -> None:
    """Configured header names (X-GitHub-Event) match whatever case the client sends; the
    first of repeated headers wins."""
    bootstrap, url = gateway
    body = b'{"action":"opened"}'
    headers = [("x-github-event", "pull_request"), ("X-GITHUB-EVENT", "ignored"), ("X-Hub-Signature-256", sign_github(body, "gh-secret"))]
    r = httpx.post(url + "/hooks/github", content=body, headers=headers)
    assert r.status_code == 202, r.text
    offset = r.json()["offset"]
    mine = [m for m in read_topic(bootstrap, "code.github", offset + 1) if m.offset() == offset]
    assert dict(mine[0].headers())["x-github-event"] == b"pull_request"
