"""gateway.toml parsing, JSON paths, the seen-id window, rate limits and push positions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from riverbed.gateway.config import ConfigError, GatewayConfig, json_path
from riverbed.gateway.limits import RateLimiter, SeenWindow
from riverbed.gateway.push import Client, Rec, format_position, parse_position, render

EXAMPLE = """
[cluster]
bootstrap.servers = "127.0.0.1:19092"

[gateway]
listen = "0.0.0.0:8088"

[auth]
key_env = "JWT_KEY"

[[webhooks.in]]
path = "/hooks/stripe"
topic = "payments.stripe"
verify = "stripe"
secret_env = "STRIPE_SECRET"
key = "data.object.customer"

[[push]]
path = "/push/orders"
topic = "orders.completed"
filter = "field"
field = "userId"

[[webhooks.out]]
name = "billing"
topic = "orders.completed"
url = "http://127.0.0.1:9/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""


def test_example_config(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(EXAMPLE)
    cfg = GatewayConfig.load(path, {"JWT_KEY": "k", "STRIPE_SECRET": "whsec_s"})
    assert cfg.cluster.bootstrap == "127.0.0.1:19092" and cfg.listen == "0.0.0.0:8088"
    assert cfg.inbound[0].secret == "whsec_s" and cfg.inbound[0].key == "data.object.customer"
    assert cfg.push[0].filter == "field" and cfg.jwt.key == "k"
    assert cfg.outbound[0].dead_letter_topic == "orders.completed.billing.DLQ"
    assert cfg.outbound[0].group_id == "riverbed-gateway-out-billing"
    assert cfg.outbound[0].retry_topic == "orders.completed.billing.retry"
    assert cfg.outbound[0].retry_group_id == "riverbed-gateway-out-billing.retry"
    assert cfg.outbound[0].max_parked == 10_000
    # permessage-deflate off by default: about half the memory per WebSocket (docs/gateway.md)
    assert cfg.server_options() == {
        "http": "riverbed.web.coalesce:CoalescingHttpToolsProtocol",
        "ws": "websockets-sansio",
        "ws_max_size": 16 * 1024 * 1024,
        "ws_per_message_deflate": False,
    }
    tuned = GatewayConfig.from_mapping(
        {"gateway": {"websocket": "wsproto", "ws_max_size": 65536, "ws_per_message_deflate": True}},
        {},
    )
    assert tuned.server_options() == {
        "http": "riverbed.web.coalesce:CoalescingHttpToolsProtocol",
        "ws": "wsproto",
        "ws_max_size": 65536,
        "ws_per_message_deflate": True,
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"webhooks": {"in": [{"path": "/a", "topic": "t", "verify": "stripe"}]}}, "needs secret"),
        (
            {"webhooks": {"in": [{"path": "/a", "topic": "t", "verify": "md5", "secret": "s"}]}},
            "verify must be",
        ),
        ({"webhooks": {"in": [{"path": "/a", "topic": "t", "secret_env": "NOPE"}]}}, "NOPE"),
        (
            {"webhooks": {"in": [{"path": "/a", "topic": "t", "colour": "red"}]}},
            "unknown keys colour",
        ),
        ({"push": [{"path": "/p", "topic": "t"}]}, "need key"),
        ({"push": [{"path": "/p", "topic": "t", "auth": "none", "filter": "key"}]}, "needs auth"),
        ({"push": [{"path": "/p", "topic": "t", "auth": "none", "overflow": "grow"}]}, "overflow"),
        (
            {
                "webhooks": {
                    "out": [{"name": "n", "topic": "t", "url": "http://x", "secret": "not base64!"}]
                }
            },
            "whsec_",
        ),
        (
            {
                "webhooks": {"in": [{"path": "/a", "topic": "t"}]},
                "push": [{"path": "/a", "topic": "t", "auth": "none"}],
            },
            "used twice",
        ),
        (
            {
                "webhooks": {
                    "out": [
                        {
                            "name": "n",
                            "topic": "t",
                            "url": "http://x",
                            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                            "max_parked": 0,
                        }
                    ]
                }
            },
            "max_parked must be >= 1",
        ),
        ({"gateway": {"port": 1}}, "unknown keys port"),
        ({"gateway": {"websocket": "websockets"}}, "websockets-sansio or wsproto"),
    ],
)
def test_bad_config_is_refused_clearly(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GatewayConfig.from_mapping(doc, {})


def test_json_path() -> None:
    doc = {"data": {"object": {"customer": "cus_1", "items": [{"sku": "a"}, {"sku": "b"}]}}}
    assert json_path(doc, "data.object.customer") == "cus_1"
    assert json_path(doc, "$.data.object.items[1].sku") == "b"
    assert json_path(doc, "data.object.items.5.sku") is None
    assert json_path(doc, "data.missing.x") is None
    assert json_path("not a dict", "a") is None


def test_seen_window_is_bounded_and_failed_ids_can_retry() -> None:
    async def run() -> None:
        w = SeenWindow(3)
        assert w.claim("a") is None
        w.done("a", {"offset": 1})
        first = w.claim("a")
        assert first is not None and await first == {"offset": 1}
        for name in "bcde":
            assert w.claim(name) is None
        assert len(w) == 3 and "a" not in w
        w.forget("e", RuntimeError("not stored"))
        assert w.claim("e") is None  # a retry of a failed delivery produces again

    asyncio.run(run())


def test_rate_limiter() -> None:
    r = RateLimiter(rate=2, burst=2, clients=2)
    assert r.take("x", 0.0) == 0 and r.take("x", 0.0) == 0
    assert r.take("x", 0.0) == pytest.approx(0.5)
    assert r.take("x", 0.5) == 0  # a token came back
    r.take("y", 0.5)
    r.take("z", 0.5)
    assert r.take("x", 0.5) == 0  # x was forgotten (capacity 2): a full bucket again


def test_positions_and_rendering() -> None:
    assert parse_position("0:15,1:7") == {0: 15, 1: 7}
    assert parse_position(None) is None
    assert format_position({1: 7, 0: 15}) == "0:15,1:7"
    for bad in ("x", "0:", "0:-1", "a:1"):
        with pytest.raises(ValueError):
            parse_position(bad)
    assert (
        render("t", 0, 5, b"k", b'{"a":1}', 9)
        == '"topic":"t","partition":0,"offset":5,"timestamp":9,"key":"k","value":{"a":1}'
    )
    assert render("t", 0, 5, None, b"plain", 9).endswith('"key":null,"value":"plain"')
    assert render("t", 0, 5, None, b"\xff\x00", 9).endswith('"value_base64":"/wA="')


def test_client_queue_is_bounded_by_policy() -> None:
    async def run() -> None:
        drop = Client(None, 2, "drop", {0: 0})
        skip = Client(None, 2, "skip", {0: 0})
        for i in range(5):
            for c in (drop, skip):
                c.offer(Rec(0, i, None, ""))
        assert drop.dropped and len(drop.queue) == 0 and await drop.next(0.1) == "dropped"
        assert len(skip.queue) <= 2
        assert await skip.next(0.1) == "skipped:4"
        item = await skip.next(0.1)
        assert isinstance(item, Rec) and item.offset == 4 and skip.cursor == {0: 5}

    asyncio.run(run())


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    from riverbed.gateway.config import OutboundSubscription
    from riverbed.gateway.webhooks_out import backoff

    sub = OutboundSubscription(
        "s", "t", "http://x", "whsec_AAAA", backoff_ms=100, backoff_max_ms=1000
    )
    rng = random.Random(7)
    for attempt, full in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (20, 1.0)]:
        delays = [backoff(sub, attempt, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not one value


def test_replay_buffer_is_bounded_by_records_and_bytes() -> None:
    from riverbed.client import ClusterSettings
    from riverbed.gateway.config import PushRoute
    from riverbed.gateway.push import TopicHub

    async def run() -> None:
        hub = TopicHub(
            PushRoute("/p", "t", auth="none", replay=100, replay_bytes=2000), ClusterSettings()
        )
        for i in range(300):
            hub._keep(Rec(i % 2, i, None, "x" * 50))
        for p in (0, 1):
            ring = hub.ring[p]
            assert sum(len(r.body) for r in ring) == hub.ring_bytes[p] <= 1000  # half of 2000 each
            assert [r.offset for r in ring] == list(range(300 - 40 + p, 300, 2))  # the newest 20
        hub2 = TopicHub(PushRoute("/p", "t", auth="none", replay=5), ClusterSettings())
        for i in range(50):
            hub2._keep(Rec(0, i, None, "y"))
        assert [r.offset for r in hub2.ring[0]] == [45, 46, 47, 48, 49] and hub2.ring_bytes[0] == 5

    asyncio.run(run())


def test_client_batch_takes_everything_queued_with_one_wake_up() -> None:
    from riverbed.gateway.push import Client, Rec

    async def run() -> None:
        c = Client(None, 3, "skip", {0: 0, 1: 4})
        assert await c.batch(0.05) is None  # idle: the SSE heartbeat's turn
        waiter = asyncio.create_task(c.batch(None))
        await asyncio.sleep(0)
        recs = [Rec(0, i, None, f'"n":{i}') for i in range(5)]  # 5 into a queue of 3: 3 skipped
        for r in recs:
            c.offer(r)
        items = await waiter
        assert items == ["skipped:3", recs[3], recs[4]] and not c.queue
        assert c.cursor == {0: 0, 1: 4}  # moved only as each is written
        assert c.advance(recs[3]) == "0:4,1:4" and c.advance(recs[4]) == "0:5,1:4"
        assert recs[4].sse_data == b'data: {"n":4}\n\n' and recs[4].sse_data is recs[4].sse_data
        c.drop()
        assert await c.batch(None) == ["dropped"]
        assert format_position({2: 9}) == "2:9"

    asyncio.run(run())
