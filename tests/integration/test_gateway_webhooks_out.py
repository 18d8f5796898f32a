"""Webhooks out against real HTTP endpoints: signed POSTs, per-key order through failures,
dead letters, and a slow endpoint that does not stall another."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from riverbed.gateway.signatures import SignatureError, verify_standard
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker
from riverbed.web import HttpServer, create_app

from .gateway_helpers import read_topic, running_gateway, wait_for

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """HTTP endpoints: /flaky fails its first 10 requests, /down always answers 503, /slow
    takes 3 s, /fast answers at once. Each records what it accepted (signature checked)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[str, dict[str, Any], str]]] = {"flaky": [], "slow": [], "fast": [], "restart": [], "limited": [], "persist": []}
        self.calls: dict[str, int] = {"flaky": 0, "down": 0, "slow": 0, "fast": 0, "restart": 0, "limited": 0, "persist": 0}
        self.times: list[float] = []
        self.bad_signatures = 0

        async def endpoint(request: Request) -> Response:
            name = request.path_params["name"]
            body = await request.body()
            try:
                verify_standard(request.headers, body, SECRET)
            except SignatureError:
                self.bad_signatures += 1
                return Response(status_code=401)
            with self.lock:
                self.calls[name] += 1
                n = self.calls[name]
            if name in ("down", "persist") or (name == "flaky" and n <= 10):
                return Response(status_code=500 if name == "flaky" else 503)
            if name == "slow":
                await asyncio.sleep(1.5)
            with self.lock:
                if name == "limited":
                    self.times.append(time.monotonic())
                self.got[name].append((request.headers.get("x-riverbed-key", ""), json.loads(body), request.headers["webhook-id"]))
            return Response(status_code=204)

        self.server = HttpServer(create_app([Route("/{name}", endpoint, methods=["POST"])])).start_in_thread()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Receiver, Producer]]:
    with EmbeddedBroker(tmp_path_factory.mktemp("gw-out"), **FIXTURE_DEFAULTS) as broker:
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(40):
            p.produce("orders", json.dumps({"n": i, "kind": "paid" if i % 4 else "refund"}).encode(), key=f"k{i % 4}".encode())
        p.flush(10)
        rx = Receiver()
        fast = {"backoff_ms": 5, "backoff_max_ms": 40}
        doc = {
            "webhooks": {
                "out": [
                    {"name": "flaky", "topic": "orders", "url": rx.server.url + "/flaky", "secret": SECRET, "max_attempts": 30, "lanes": 4, **fast},
                    {"name": "down", "topic": "orders", "url": rx.server.url + "/down", "secret": SECRET, "max_attempts": 3, "filter_field": "kind", "filter_equals": "refund", **fast},
                    {"name": "slow", "topic": "orders", "url": rx.server.url + "/slow", "secret": SECRET, "timeout_ms": 20_000, "lanes": 1, **fast},
                    {"name": "fast", "topic": "orders", "url": rx.server.url + "/fast", "secret": SECRET, **fast},
                ]
            }
        }
        try:
            with running_gateway(doc, broker.bootstrap):
                yield broker.bootstrap, rx, p
        finally:
            rx.server.stop()


def test_endpoint_failing_10_times_then_recovering_gets_every_record_in_key_order(setup: tuple[str, Receiver, Producer]) -> None:
    _, rx, _ = setup
    wait_for(lambda: len(rx.got["flaky"]) >= 40, timeout=30, what="40 deliveries")
    assert rx.calls["flaky"] >= 50 and rx.bad_signatures == 0
    per_key: dict[str, list[int]] = {}
    for key, doc, _ in rx.got["flaky"]:
        per_key.setdefault(key, []).append(doc["n"])
    assert per_key == {f"k{k}": list(range(k, 40, 4)) for k in range(4)}
    # each record once, with a stable id
    assert len({mid for _, _, mid in rx.got["flaky"]}) == 40


def test_never_recovering_endpoint_ends_in_the_dead_letter_topic(setup: tuple[str, Receiver, Producer]) -> None:
    bootstrap, rx, _ = setup
    dead = read_topic(bootstrap, "orders.down.DLQ", 10, timeout=30)
    assert sorted(json.loads(m.value())["n"] for m in dead) == list(range(0, 40, 4))  # the filter's records only
    h = {k: v.decode() for k, v in dead[0].headers()}
    assert h["riverbed.errors.attempts"] == "3" and h["riverbed.errors.topic"] == "orders"
    assert "HTTP 503" in h["riverbed.errors.exception.message"]
    assert rx.calls["down"] == 30


def test_a_slow_endpoint_does_not_stall_another(setup: tuple[str, Receiver, Producer]) -> None:
    _, rx, _ = setup
    wait_for(lambda: len(rx.got["fast"]) == 40, timeout=20, what="the fast endpoint's 40 records")
    assert len(rx.got["slow"]) < 40  # 1.5 s each, one lane: still far behind
    assert [doc["n"] for key, doc, _ in rx.got["fast"] if key == "k1"] == list(range(1, 40, 4))


def test_delivery_state_survives_a_restart(setup: tuple[str, Receiver, Producer]) -> None:
    bootstrap, rx, p = setup
    doc = {"webhooks": {"out": [{"name": "restart", "topic": "orders", "url": rx.server.url + "/restart", "secret": SECRET}]}}
    with running_gateway(doc, bootstrap):
        wait_for(lambda: len(rx.got["restart"]) >= 40, timeout=20, what="40 deliveries")
    p.produce("orders", b'{"n": 40, "kind": "paid"}', key=b"k0")
    p.flush(10)
    with running_gateway(doc, bootstrap):  # committed offsets: only the new record is sent
        wait_for(lambda: len(rx.got["restart"]) >= 41, timeout=20, what="the 41st delivery")
    assert [doc["n"] for _, doc, _ in rx.got["restart"]][40:] == [40]
    assert rx.calls["restart"] == 41


def test_rate_limit_per_endpoint(setup: tuple[str, Receiver, Producer]) -> None:
    bootstrap, rx, _ = setup
    doc = {"webhooks": {"out": [{"name": "limited", "topic": "orders", "url": rx.server.url + "/limited", "secret": SECRET, "rate_limit": 20}]}}
    with running_gateway(doc, bootstrap):
        wait_for(lambda: len(rx.got["limited"]) >= 40, timeout=20, what="40 deliveries")
    # a bucket of 20 then 20 per second: the last 20 take about a second
    assert rx.times[-1] - rx.times[0] >= 0.8


def test_retry_schedule_survives_a_restart(setup: tuple[str, Receiver, Producer]) -> None:
    bootstrap, rx, p = setup
    p.produce("persist.orders", b'{"n": 1}', key=b"k")
    p.flush(10)
    doc = {"webhooks": {"out": [{"name": "persist", "topic": "persist.orders", "url": rx.server.url + "/persist", "secret": SECRET, "max_attempts": 3, "backoff_ms": 800, "backoff_max_ms": 800}]}}
    with running_gateway(doc, bootstrap):
        wait_for(lambda: rx.calls["persist"] >= 1, timeout=20, what="the first attempt")
    # restarted mid-backoff: the attempt count and the due time come back from the retry topic
    with running_gateway(doc, bootstrap):
        dead = read_topic(bootstrap, "persist.orders.persist.DLQ", 1, timeout=20)
    assert rx.calls["persist"] == 3  # not 1 + 3
    assert dict(dead[0].headers())["riverbed.errors.attempts"] == b"3"
