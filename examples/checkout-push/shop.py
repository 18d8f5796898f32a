"""The lecture's shop, wired through riverbed.gateway: the browser's checkout POST becomes an
event (202 once stored), a payment service and an order service talk over topics, and the
gateway pushes OrderCompletedEvent to that user's browser page only.

    browser --POST /api/checkout (JWT)--> gateway --> checkout.requested
    payment service: checkout.requested --> payment.captured
    order service:   payment.captured   --> orders.completed (OrderCompletedEvent, key = user)
    gateway --SSE /push/orders (JWT, key == user)--> browser: the page turns green
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from confluent_kafka import Consumer, Producer
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from riverbed.client import ClusterSettings, admin, ensure_topics
from riverbed.gateway import Gateway, GatewayConfig
from riverbed.web import HttpServer

SIGNING_KEY = "checkout-push-demo-signing-key-0123456789"  # a demo key: use key_env in real life

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout</title>
<style>body{font-family:sans-serif;padding:2em;background:#eee;transition:background .3s}</style></head>
<body>
<h1>Cart of <span id="user"></span></h1>
<button id="checkout">Checkout</button>
<p id="status">Not ordered yet</p>
<ul id="orders"></ul>
<script>
const token = new URLSearchParams(location.search).get("token");
document.getElementById("user").textContent = JSON.parse(atob(token.split(".")[1])).sub;
window.received = [];   // every OrderCompletedEvent this page got, in order
window.connections = 0; // how many times the stream (re)opened
const events = new EventSource("/push/orders?access_token=" + encodeURIComponent(token));
events.onopen = () => { window.connections += 1; };
events.onmessage = (e) => {
  const record = JSON.parse(e.data);
  if (record.value.type !== "OrderCompletedEvent") return;
  window.received.push(record.value.orderId);
  document.body.style.background = "#3c3";
  document.getElementById("status").textContent = "Order Complete! " + record.value.orderId;
  const li = document.createElement("li");
  li.textContent = record.value.orderId;
  document.getElementById("orders").appendChild(li);
};
document.getElementById("checkout").onclick = async () => {
  const r = await fetch("/api/checkout", {method: "POST",
    headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    body: JSON.stringify({checkoutId: crypto.randomUUID(), items: [{sku: "book", qty: 1}], total: 1999})});
  document.getElementById("status").textContent = "Checkout: HTTP " + r.status;
};
</script>
</body></html>
"""


def token(user: str, ttl: int = 3600) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, SIGNING_KEY, algorithm="HS256")


def gateway_config(bootstrap: str) -> GatewayConfig:
    return GatewayConfig.from_mapping({
        "cluster": {"bootstrap.servers": bootstrap},
        "auth": {"key": SIGNING_KEY, "algorithms": ["HS256"]},
        "webhooks": {"in": [{"path": "/api/checkout", "topic": "checkout.requested", "auth": "jwt", "id": "checkoutId"}]},
        "push": [{"path": "/push/orders", "topic": "orders.completed", "filter": "key", "auth": "jwt"}],
    }, env={})


@dataclass
class Service:
    """Consume one topic, produce what `handle` returns to another (a thread, at-least-once)."""

    name: str
    bootstrap: str
    source: str
    target: str
    handle: Any
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, name=self.name, daemon=True)
        t.start()
        return t

    def run(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.name, "auto.offset.reset": "earliest", "enable.auto.commit": False})
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 0})
        c.subscribe([self.source])
        try:
            while not self.stop.is_set():
                done = 0
                for m in c.consume(100, 0.1):
                    if m.error() is not None:
                        continue
                    key, value = self.handle(m.key(), json.loads(m.value() or b"{}"), dict(m.headers() or []))
                    p.produce(self.target, json.dumps(value).encode(), key=key)
                    done += 1
                if done:
                    p.flush(10)
                    c.commit(asynchronous=False)
        finally:
            c.close()


def take_payment(key: bytes | None, checkout: dict[str, Any], headers: dict[str, bytes]) -> tuple[bytes | None, dict[str, Any]]:
    user = headers.get("riverbed.gateway.user", b"").decode()
    return key, {"type": "PaymentCapturedEvent", "userId": user, "checkoutId": checkout["checkoutId"], "amount": checkout.get("total", 0)}


def complete_order(key: bytes | None, payment: dict[str, Any], headers: dict[str, bytes]) -> tuple[bytes | None, dict[str, Any]]:
    order_id = "order-" + payment["checkoutId"][:8]
    return payment["userId"].encode(), {"type": "OrderCompletedEvent", "userId": payment["userId"], "orderId": order_id, "checkoutId": payment["checkoutId"]}


class Shop:
    """The gateway (with the page at /) and both services, against `bootstrap`."""

    def __init__(self, bootstrap: str, port: int = 0) -> None:
        async def page(request: Request) -> Response:
            return HTMLResponse(PAGE)

        self.bootstrap = bootstrap
        self.gateway = Gateway(gateway_config(bootstrap), extra_routes=[Route("/", page)])
        self.services = [
            Service("payment-service", bootstrap, "checkout.requested", "payment.captured", take_payment),
            Service("order-service", bootstrap, "payment.captured", "orders.completed", complete_order),
        ]
        self.server = HttpServer(self.gateway.app, port=port)

    @property
    def url(self) -> str:
        return self.server.url

    def page_url(self, user: str) -> str:
        return f"{self.url}/?token={token(user)}"

    def start(self) -> Shop:
        ensure_topics(admin(ClusterSettings(self.bootstrap)), {"payment.captured": (1, {})})
        self.server.start_in_thread()  # the gateway creates its routes' topics at start
        self.threads = [s.start() for s in self.services]
        return self

    def complete_order_directly(self, user: str) -> str:
        """An OrderCompletedEvent produced straight to the topic (as another service would)."""
        order_id = f"order-direct-{uuid.uuid4().hex[:6]}"
        p = Producer({"bootstrap.servers": self.bootstrap})
        p.produce("orders.completed", json.dumps({"type": "OrderCompletedEvent", "userId": user, "orderId": order_id}).encode(), key=user.encode())
        p.flush(10)
        return order_id

    def stop(self) -> None:
        for s in self.services:
            s.stop.set()
        for t in getattr(self, "threads", []):
            t.join(10)
        self.gateway.drop_push_clients()
        self.server.stop()
