"""SSE and WebSocket push over real HTTP from a real broker: per-user views, JWT, resume,
backpressure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from confluent_kafka import Producer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from riverbed.gateway import Gateway
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

from .gateway_helpers import NeverReads, SseReader, running_gateway, wait_for

pytestmark = pytest.mark.integration

KEY = "test-signing-key-of-at-least-32-bytes!"
DOC: dict[str, Any] = {
    "auth": {"key": KEY, "algorithms": ["HS256"]},
    "push": [
        {
            "path": "/push/orders",
            "topic": "orders.completed",
            "filter": "field",
            "field": "userId",
            "queue": 1000,
            "replay": 100,
        },
        {
            "path": "/push/by-key",
            "topic": "by.key",
            "filter": "key",
            "scope": "orders:read",
            "queue": 32,
            "overflow": "drop",
        },
        {
            "path": "/push/all",
            "topic": "all.events",
            "auth": "none",
            "queue": 4,
            "overflow": "skip",
        },
        {
            "path": "/push/few",
            "topic": "all.events",
            "filter": "key",
            "max_per_user": 2,
            "max_clients": 3,
        },
        {
            "path": "/push/short",
            "topic": "short.buffer",
            "filter": "key",
            "replay": 3,
            "queue": 100,
        },
    ],
}


def token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, **claims}, KEY, algorithm="HS256")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("gw-push"), **FIXTURE_DEFAULTS) as b:
        yield b


@pytest.fixture(scope="module")
def env(broker: EmbeddedBroker) -> Iterator[tuple[Gateway, str, Producer]]:
    with running_gateway(DOC, broker.bootstrap) as (gw, url):
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        yield gw, url, p
        p.flush(5)


@pytest.fixture(scope="module")
def wsproto_env(broker: EmbeddedBroker) -> Iterator[tuple[Gateway, str, Producer]]:
    """The same routes served with uvicorn's wsproto WebSocket implementation."""
    with running_gateway({**DOC, "gateway": {"websocket": "wsproto"}}, broker.bootstrap) as (
        gw,
        url,
    ):
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        yield gw, url, p
        p.flush(5)


@pytest.fixture(params=["websockets", "wsproto"])
def ws_env(request: pytest.FixtureRequest) -> tuple[Gateway, str, Producer]:
    env: tuple[Gateway, str, Producer] = request.getfixturevalue(
        "env" if request.param == "websockets" else "wsproto_env"
    )
    return env


def send(p: Producer, topic: str, docs: list[dict[str, Any]], key: str | None = None) -> None:
    for d in docs:
        p.produce(topic, json.dumps(d).encode(), key=key)
    p.flush(10)


def test_sse_user_sees_only_own_events_and_resumes(env: tuple[Gateway, str, Producer]) -> None:
    gw, url, p = env
    alice = SseReader(url + "/push/orders", {"Authorization": f"Bearer {token('alice')}"})
    bob = SseReader(url + f"/push/orders?access_token={token('bob')}")
    wait_for(lambda: len(gw.hubs["/push/orders"].clients()) == 2, what="two subscribers")
    send(
        p,
        "orders.completed",
        [{"userId": u, "n": i} for i, u in enumerate(["alice", "bob", "alice", "carol", "alice"])],
    )
    assert [r["value"]["n"] for r in alice.wait(3)] == [0, 2, 4]
    assert [r["value"]["n"] for r in bob.wait(1)] == [1]
    last_id = alice.events[-1][1]
    alice.close()
    wait_for(lambda: len(gw.hubs["/push/orders"].clients()) == 1, what="alice gone")
    send(
        p,
        "orders.completed",
        [{"userId": "alice", "n": 5}, {"userId": "bob", "n": 6}, {"userId": "alice", "n": 7}],
    )
    # the browser's EventSource sends Last-Event-ID when it reconnects
    again = SseReader(
        url + "/push/orders",
        {"Authorization": f"Bearer {token('alice')}", "Last-Event-ID": last_id or ""},
    )
    assert [r["value"]["n"] for r in again.wait(2)] == [5, 7]
    time.sleep(0.3)  # nothing more may come (bob's and carol's records stay out)
    assert [r["value"]["n"] for r in again.records()] == [5, 7]
    assert [r["value"]["n"] for r in bob.wait(2)] == [1, 6]
    again.close()
    bob.close()


def test_auth_is_required_and_checked(env: tuple[Gateway, str, Producer]) -> None:
    _, url, _ = env
    assert httpx.get(url + "/push/orders").status_code == 401
    assert httpx.get(url + "/push/orders?access_token=nonsense").status_code == 401
    expired = jwt.encode({"sub": "a", "exp": int(time.time()) - 3600}, KEY, algorithm="HS256")
    r = httpx.get(url + "/push/orders", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["message"]
    forged = jwt.encode({"sub": "a"}, "another-key-another-key-another-key!", algorithm="HS256")
    assert httpx.get(url + f"/push/orders?access_token={forged}").status_code == 401
    assert (
        httpx.get(url + f"/push/by-key?access_token={token('a')}").status_code == 403
    )  # lacks the scope
    assert (
        httpx.get(
            url + "/push/orders?position=zz", headers={"Authorization": f"Bearer {token('a')}"}
        ).status_code
        == 400
    )
    with pytest.raises(InvalidStatus):
        connect(url.replace("http", "ws") + "/push/orders", open_timeout=5).close()


def test_websocket_stream_and_resume_by_position(ws_env: tuple[Gateway, str, Producer]) -> None:
    gw, url, p = ws_env
    ws_url = (
        url.replace("http", "ws")
        + f"/push/by-key?access_token={token('dora', scope='orders:read')}"
    )
    with connect(ws_url, open_timeout=5) as ws:
        # the client offered permessage-deflate (as browsers do); the gateway declines by default
        assert ws.response is not None and "Sec-WebSocket-Extensions" not in ws.response.headers
        wait_for(lambda: "dora" in gw.hubs["/push/by-key"].by_user, what="subscriber")
        send(p, "by.key", [{"n": 1}], key="dora")
        send(p, "by.key", [{"n": 2}], key="eve")
        send(p, "by.key", [{"n": 3}], key="dora")
        frames = [json.loads(ws.recv(5)) for _ in range(2)]
        assert [f["value"]["n"] for f in frames] == [1, 3] and all(
            f["key"] == "dora" for f in frames
        )
        ws.send("garbage that is not part of the protocol")  # ignored, the stream goes on
        position = frames[0]["position"]
    with connect(ws_url + f"&position={position}", open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["value"]["n"] == 3


def test_a_client_that_never_reads_is_dropped_and_others_keep_going(
    ws_env: tuple[Gateway, str, Producer],
) -> None:
    gw, url, p = ws_env
    hub = gw.hubs["/push/by-key"]
    ws_url = (
        url.replace("http", "ws")
        + f"/push/by-key?access_token={token('slow', scope='orders:read')}"
    )
    fast = SseReader(url + f"/push/by-key?access_token={token('fast', scope='orders:read')}")
    never_reads = NeverReads(ws_url)
    try:
        wait_for(lambda: "slow" in hub.by_user and "fast" in hub.by_user, what="two subscribers")
        big = "x" * 200_000
        sent = 0
        for i in range(400):
            send(p, "by.key", [{"n": i, "pad": big}], key="slow")
            send(p, "by.key", [{"n": i}], key="fast")
            sent += 1
            if "slow" not in hub.by_user:
                break
        wait_for(lambda: "slow" not in hub.by_user, timeout=30, what="the slow websocket dropped")
        # the gateway's memory for it is gone with it; the reading client got everything
        assert [r["value"]["n"] for r in fast.wait(sent)] == list(range(sent)), (
            fast.error,
            fast.ended,
            fast.events[-3:],
        )
        assert "fast" in hub.by_user
    finally:
        never_reads.close()
    fast.close()


def test_skip_policy_tells_the_client_what_it_missed(env: tuple[Gateway, str, Producer]) -> None:
    gw, url, _ = env
    hub = gw.hubs["/push/all"]
    reader = SseReader(url + "/push/all")
    wait_for(lambda: len(hub.clients()) == 1, what="subscriber")
    # stall the client: fill its queue faster than the loop can hand it out, in one batch
    client = hub.clients()[0]
    from riverbed.gateway.push import Rec

    # ten records in one loop turn (on the gateway's loop: clients are not thread-safe)
    hub.call_soon(lambda: [client.offer(Rec(0, 1000 + i, None, f'"n":{i}')) for i in range(10)])
    wait_for(lambda: any(e == "skipped" for e, _, _ in reader.events), what="a skipped notice")
    skipped = next(d for e, _, d in reader.events if e == "skipped")
    assert skipped["count"] >= 6
    assert len(gw.hubs["/push/all"].clients()) == 1  # still connected
    reader.close()


def test_connection_limits_per_user_and_per_route(env: tuple[Gateway, str, Producer]) -> None:
    gw, url, _ = env
    hub = gw.hubs["/push/few"]
    a = [SseReader(url + f"/push/few?access_token={token('ann')}") for _ in range(2)]
    wait_for(lambda: hub.count == 2, what="two connections")
    third = SseReader(url + f"/push/few?access_token={token('ann')}")
    assert third.wait_status() == 429
    b = SseReader(url + f"/push/few?access_token={token('ben')}")
    wait_for(lambda: hub.count == 3, what="three connections")
    full = SseReader(url + f"/push/few?access_token={token('cid')}")
    assert full.wait_status() == 503
    with pytest.raises(InvalidStatus):
        connect(
            url.replace("http", "ws") + f"/push/few?access_token={token('dan')}", open_timeout=5
        ).close()
    for r in [*a, third, b, full]:
        r.close()
    wait_for(lambda: hub.count == 0, what="all gone")


def test_resume_from_before_the_replay_buffer_reads_the_log(
    env: tuple[Gateway, str, Producer],
) -> None:
    gw, url, p = env
    hub = gw.hubs["/push/short"]
    first = SseReader(url + f"/push/short?access_token={token('eve')}")
    wait_for(lambda: hub.count == 1, what="subscriber")
    send(p, "short.buffer", [{"n": 0}], key="eve")
    (rec,) = first.wait(1)
    position = first.events[0][1]
    first.close()
    for i in range(1, 21):  # far more than the 3 records the buffer keeps
        send(p, "short.buffer", [{"n": i}], key="eve" if i % 2 else "fay")
    wait_for(lambda: hub.next_offset[0] >= rec["offset"] + 21, what="the hub to read them")
    again = SseReader(
        url + "/push/short",
        {"Authorization": f"Bearer {token('eve')}", "Last-Event-ID": position or ""},
    )
    assert [r["value"]["n"] for r in again.wait(10)] == list(range(1, 21, 2))
    assert not any(e == "reset" for e, _, _ in again.events)
    send(p, "short.buffer", [{"n": 21}], key="eve")
    assert [r["value"]["n"] for r in again.wait(11)][-1] == 21  # and it is live afterwards
    again.close()


def test_partitions_added_later_are_followed(env: tuple[Gateway, str, Producer]) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    gw, url, p = env
    hub = gw.hubs["/push/all"]
    hub.metadata_interval = 0.2
    reader = SseReader(url + "/push/all")
    wait_for(lambda: hub.count == 1, what="subscriber")
    admin = AdminClient({"bootstrap.servers": gw.config.cluster.bootstrap})
    admin.create_partitions([NewPartitions("all.events", 2)])["all.events"].result(10)
    wait_for(lambda: 1 in hub.ring, what="the new partition")
    wait_for(
        lambda: len(p.list_topics("all.events", timeout=5).topics["all.events"].partitions) == 2,
        what="the producer to see it",
    )
    p.produce("all.events", b'{"n": "p1"}', partition=1)
    p.flush(10)
    assert next(r for r in reader.wait(1) if r["partition"] == 1)["value"] == {"n": "p1"}
    assert reader.events[-1][1] is not None and "1:" in (reader.events[-1][1] or "")
    reader.close()


def test_a_malformed_websocket_frame_closes_that_socket_only(
    ws_env: tuple[Gateway, str, Producer],
) -> None:
    gw, url, p = ws_env
    hub = gw.hubs["/push/by-key"]
    ws_url = (
        url.replace("http", "ws") + f"/push/by-key?access_token={token('mal', scope='orders:read')}"
    )
    good = SseReader(url + f"/push/by-key?access_token={token('mal', scope='orders:read')}")
    bad = NeverReads(ws_url)
    wait_for(lambda: len(hub.by_user.get("mal", ())) == 2, what="two subscribers")
    bad.sock.sendall(
        b"\x8f\xff" + b"\x00" * 8 + b"not a websocket frame"
    )  # reserved opcode, unmasked, absurd length
    wait_for(lambda: len(hub.by_user.get("mal", ())) == 1, what="the bad socket closed")
    bad.close()
    send(p, "by.key", [{"n": "still"}], key="mal")
    assert good.wait(1)[0]["value"] == {"n": "still"}
    good.close()
