"""Webhooks out parks a failing key's records in the retry topic: other keys of the same
subscription go on, the key's own records stay in order, and the schedule survives kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from riverbed.gateway.signatures import verify_standard
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker, free_port
from riverbed.web import HttpServer, create_app

from .gateway_helpers import read_topic, running_gateway, wait_for

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Endpoint:
    """Answers 503 to records of the keys in `down`, 204 to the rest; counts calls per
    webhook-id and keeps what it accepted, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down: set[str] = set()
        self.calls: dict[str, int] = {}
        self.got: list[tuple[str, int, str]] = []  # key, n, webhook-id

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            verify_standard(request.headers, body, SECRET)
            key, mid = request.headers.get("x-riverbed-key", ""), request.headers["webhook-id"]
            with self.lock:
                self.calls[mid] = self.calls.get(mid, 0) + 1
                if key in self.down:
                    return Response(status_code=503)
                self.got.append((key, json.loads(body)["n"], mid))
            return Response(status_code=204)

        self.server = HttpServer(create_app([Route("/hook", endpoint, methods=["POST"])])).start_in_thread()

    def per_key(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        with self.lock:
            for key, n, _ in self.got:
                out.setdefault(key, []).append(n)
        return out


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker(tmp_path_factory.mktemp("gw-park"), **FIXTURE_DEFAULTS) as b:
        yield b.bootstrap


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    try:
        yield ep
    finally:
        ep.server.stop()


def produce(bootstrap: str, topic: str, keys: list[str], n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topic, json.dumps({"n": i}).encode(), key=keys[i % len(keys)].encode())
    p.flush(10)


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return int(c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)
    finally:
        c.close()


def test_a_failing_key_does_not_hold_the_other_keys(broker: str, endpoint: Endpoint) -> None:
    produce(broker, "mixed", ["bad", "good1", "good2"], 30)
    endpoint.down.add("bad")
    # one lane: before parking, the first "bad" record held every key behind it
    sub = {"name": "one", "topic": "mixed", "url": endpoint.server.url + "/hook", "secret": SECRET, "lanes": 1, "backoff_ms": 50, "backoff_max_ms": 200, "max_attempts": 1000}
    with running_gateway({"webhooks": {"out": [sub]}}, broker) as (gw, _):
        wait_for(lambda: len(endpoint.got) == 20, timeout=30, what="the good keys' 20 records")
        assert endpoint.per_key() == {"good1": list(range(1, 30, 3)), "good2": list(range(2, 30, 3))}
        wait_for(lambda: endpoint.calls.get("msg_mixed_0_0", 0) >= 3, timeout=20, what="retries of the first bad record")
        # only the bad key's first record is tried: the later ones wait behind it, parked
        assert all(endpoint.calls.get(f"msg_mixed_0_{o}", 0) == 0 for o in range(3, 30, 3))
        newest: dict[bytes, dict[str, bytes]] = {}  # webhook-id -> headers of its newest copy
        for m in read_topic(broker, "mixed.one.retry", 12):
            newest[dict(m.headers())["riverbed.retry.id"]] = dict(m.headers()) | {"n": m.value()}
        assert sorted(json.loads(h["n"])["n"] for h in newest.values()) == list(range(0, 30, 3))
        assert int(newest[b"msg_mixed_0_0"]["riverbed.retry.attempts"]) >= 2  # re-parked after each retry
        assert int(newest[b"msg_mixed_0_0"]["riverbed.retry.due"]) > 0
        assert newest[b"msg_mixed_0_3"]["riverbed.retry.attempts"] == b"0"  # parked behind, not tried
        assert gw.outbound[0].stats()["parked"] == 10
        # the key recovers: its records arrive in order, each once
        endpoint.down.clear()
        wait_for(lambda: len(endpoint.got) == 30, timeout=30, what="all 30 records")
        wait_for(lambda: gw.outbound[0].stats()["parked"] == 0, timeout=10, what="nothing parked")
    assert endpoint.per_key()["bad"] == list(range(0, 30, 3))
    assert len({mid for _, _, mid in endpoint.got}) == 30
    assert all(endpoint.calls[f"msg_mixed_0_{o}"] == 1 for o in range(3, 30, 3))


TOML = """
[gateway]
listen = "127.0.0.1:{port}"

[[webhooks.out]]
name = "k9"
topic = "k9"
url = "{url}/hook"
secret = "{secret}"
lanes = 2
backoff_ms = 300
backoff_max_ms = 300
max_attempts = 1000
session_timeout_ms = 6000   # the killed instance's partitions move on after 6 s
"""


def test_kill_9_mid_retry_keeps_the_schedule_and_the_order(tmp_path: Path, broker: str, endpoint: Endpoint) -> None:
    produce(broker, "k9", ["a", "b"], 20)
    endpoint.down.add("a")
    port = free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(TOML.format(port=port, url=endpoint.server.url, secret=SECRET))

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "riverbed", "gateway", "run", str(cfg), "-b", broker], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, what="the gateway")
        return proc

    proc = start()
    try:
        wait_for(lambda: endpoint.per_key().get("b") == list(range(1, 20, 2)), timeout=30, what="key b's 10 records")
        wait_for(lambda: endpoint.calls.get("msg_k9_0_0", 0) >= 2, timeout=20, what="retries of a's first record")
        wait_for(lambda: committed(broker, "riverbed-gateway-out-k9", "k9") == 20, timeout=20, what="k9's offsets committed")
        proc.kill()  # SIGKILL: no shutdown, no final commit
        proc.wait(10)
        first_out = proc.stdout.read() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        assert "Traceback" not in first_out, first_out
        calls_before = endpoint.calls["msg_k9_0_0"]
        assert all(endpoint.calls.get(f"msg_k9_0_{o}", 0) == 0 for o in range(2, 20, 2))  # parked behind a's first
        # the schedule is in the retry topic: the newest copy of a's first record has its attempts
        state = [dict(m.headers()) for m in read_topic(broker, "k9.k9.retry", 11)]
        mine = [h for h in state if h["riverbed.retry.id"] == b"msg_k9_0_0"]
        assert int(mine[-1]["riverbed.retry.attempts"]) >= calls_before - 1 >= 1
        endpoint.down.clear()
        proc = start()
        wait_for(lambda: len(endpoint.per_key().get("a", [])) == 10, timeout=30, what="key a's 10 records")
        # settled before the kill: nothing of b comes again (the source offsets were committed)
        wait_for(lambda: gw_parked_gone(port), timeout=10, what="nothing parked")
    finally:
        proc.kill()
        proc.wait(10)
        out = proc.stdout.read() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    assert endpoint.per_key() == {"a": list(range(0, 20, 2)), "b": list(range(1, 20, 2))}, out
    assert len({mid for _, _, mid in endpoint.got}) == 20  # each once (the kill came between attempts)
    assert "Traceback" not in out, out


def gw_parked_gone(port: int) -> bool:
    stats = httpx.get(f"http://127.0.0.1:{port}/health").json()
    return bool(stats["outbound"]["k9"]["parked"] == 0)


def test_max_parked_bounds_what_is_held(broker: str, endpoint: Endpoint) -> None:
    p = Producer({"bootstrap.servers": broker})
    for i in range(9):  # six records of the failing key, then three of another
        p.produce("capped", json.dumps({"n": i}).encode(), key=b"bad" if i < 6 else b"good")
    p.flush(10)
    endpoint.down.add("bad")
    sub = {"name": "cap", "topic": "capped", "url": endpoint.server.url + "/hook", "secret": SECRET, "lanes": 1, "backoff_ms": 50, "backoff_max_ms": 100, "max_attempts": 1000, "max_parked": 3}
    with running_gateway({"webhooks": {"out": [sub]}}, broker) as (gw, _):
        w = gw.outbound[0]
        wait_for(lambda: w.stats()["parked"] == 3 and endpoint.calls.get("msg_capped_0_0", 0) >= 3, timeout=20, what="three parked, retried")
        assert w.stats()["parked"] == 3 and endpoint.got == []  # intake waits: the good key too
        endpoint.down.clear()
        wait_for(lambda: len(endpoint.got) == 9, timeout=20, what="all 9 records")
    assert endpoint.per_key() == {"bad": list(range(6)), "good": [6, 7, 8]}


def test_two_instances_each_retry_only_their_partitions_parked_records(broker: str, endpoint: Endpoint) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    adm = AdminClient({"bootstrap.servers": broker})
    adm.create_topics([NewTopic("duo", 2, 1)])["duo"].result(10)
    endpoint.down |= {"a0", "a1"}
    sub = {"name": "duo", "topic": "duo", "url": endpoint.server.url + "/hook", "secret": SECRET, "backoff_ms": 100, "backoff_max_ms": 200, "max_attempts": 1000, "session_timeout_ms": 6000}
    doc = {"webhooks": {"out": [sub]}}
    with running_gateway(doc, broker) as (one, _), running_gateway(doc, broker) as (two, _):
        a, b = one.outbound[0], two.outbound[0]
        wait_for(lambda: sorted(a.stats()["partitions"] + b.stats()["partitions"]) == [0, 1] and a.stats()["partitions"] and b.stats()["partitions"], timeout=30, what="one partition each")
        p = Producer({"bootstrap.servers": broker})
        for i in range(20):  # keys a0, b0 on partition 0; a1, b1 on partition 1; 5 records each
            part = i % 2
            p.produce("duo", json.dumps({"n": i}).encode(), key=f"{'ab'[i // 2 % 2]}{part}".encode(), partition=part)
        p.flush(10)
        wait_for(lambda: len(endpoint.got) == 10 and a.stats()["parked"] == 5 and b.stats()["parked"] == 5, timeout=30, what="b-keys delivered, a-keys parked 5 per instance")
        first = {f"msg_duo_{part}_0" for part in (0, 1)}
        wait_for(lambda: all(endpoint.calls.get(m, 0) >= 3 for m in first), timeout=20, what="retries")
    # both restart, the second one later: the first owns both partitions for a while, then
    # hands one back; every parked record is retried by one instance at a time
    with running_gateway(doc, broker) as (one, _):
        wait_for(lambda: one.outbound[0].stats()["parked"] == 10, timeout=30, what="all 10 parked records read back")
        with running_gateway(doc, broker) as (two, _):
            a, b = one.outbound[0], two.outbound[0]
            wait_for(lambda: a.stats()["parked"] == 5 and b.stats()["parked"] == 5, timeout=30, what="5 parked records each again")
            endpoint.down.clear()
            wait_for(lambda: len(endpoint.got) == 20, timeout=30, what="all 20 records")
    keys = endpoint.per_key()
    assert {k: sorted(v) == v for k, v in keys.items()} == {"a0": True, "a1": True, "b0": True, "b1": True}
    assert sum(len(v) for v in keys.values()) == 20 and len({mid for _, _, mid in endpoint.got}) == 20
