"""The lecture's upcaster: 2020's OrderPlaced v1 events read in 2025's v2 shape, in one command:

    .venv/bin/python examples/order-upcast/run.py                         # starts its own broker
    .venv/bin/python examples/order-upcast/run.py --bootstrap 127.0.0.1:9092

The 2020 code wrote ``OrderPlaced`` v1: ``{"orderId", "amount"}`` (dollars as a float, no
currency). The 2025 code reads ``OrderPlaced`` v2: ``{"orderId", "amountCents", "currency"}``.
One registered upcaster (v1 -> v2) translates on read; the stored records are never rewritten.
An event of a type the code does not know, or of a version with no upcaster path, is a clear
error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from riverbed.client import ClusterSettings
from riverbed.patterns import (
    Aggregate,
    AggregateOwner,
    CommandRejected,
    Envelope,
    EventStore,
    NoUpcastPath,
    Repository,
    TypeRegistry,
    UnknownEventType,
)

types = TypeRegistry()


@types.event("OrderPlaced", version=2)
@dataclass(frozen=True)
class OrderPlaced:
    orderId: str
    amountCents: int
    currency: str


@types.upcasters.register("OrderPlaced", 1)
def order_placed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """2020: {"orderId", "amount": dollars as float} -> 2025: cents and an explicit currency."""
    return {"orderId": data["orderId"], "amountCents": round(float(data["amount"]) * 100), "currency": "USD"}


@types.command("PlaceOrder")
@dataclass(frozen=True)
class PlaceOrder:
    amount_cents: int
    currency: str


@dataclass
class Order(Aggregate):
    aggregate_type = "order"
    amount_cents: int = 0
    currency: str = ""

    def decide(self, command: Any) -> Sequence[Any]:
        if isinstance(command, PlaceOrder):
            if self.version:
                raise CommandRejected("order already placed")
            return [OrderPlaced(self.id, command.amount_cents, command.currency)]
        raise CommandRejected(f"unknown command {command!r}")

    def apply(self, event: Any) -> None:
        if isinstance(event, OrderPlaced):
            self.amount_cents, self.currency = event.amountCents, event.currency


def run(bootstrap: str) -> None:
    settings = ClusterSettings(bootstrap=bootstrap)
    store = EventStore(settings, "order", partitions=1, prefix="shop.")
    store.ensure_topics()
    # 2020's code, as it wrote its events (a plain producer; v1 shape)
    legacy = Producer({"bootstrap.servers": bootstrap})
    for oid, amount in (("A-2020-1", 19.99), ("A-2020-2", 250.0)):
        env = Envelope("OrderPlaced", 1, "order", oid, 1, {"orderId": oid, "amount": amount}, source="shop/2020")
        legacy.produce(store.events_topic, key=oid.encode(), value=env.encode(), partition=0)
        print(f"stored in 2020: OrderPlaced v1 {env.data}")
    legacy.flush(30)
    # 2025's code appends v2 events beside them
    owner = AggregateOwner(store, Order, types, "shop", source="shop/2025")
    owner.wait_owned()
    owner.execute("A-2025-7", PlaceOrder(4_200, "EUR")).raise_for_status()
    owner.close()
    print("stored in 2025: OrderPlaced v2 {'orderId': 'A-2025-7', 'amountCents': 4200, 'currency': 'EUR'}")
    repo = Repository(store, Order, types)
    for oid in ("A-2020-1", "A-2020-2", "A-2025-7"):
        stored = repo.reader.read_aggregate(oid)[0]
        print(f"read {oid}: stored v{stored.event_version}, read as v{types.upcast(stored).event_version} {types.to_event(stored)}")
    order = repo.load("A-2020-1")
    print(f"order A-2020-1 loaded by replay: {order.amount_cents} cents {order.currency}")
    stored = repo.reader.read_aggregate("A-2020-1")[0]
    print(f"the stored record is unchanged: v{stored.event_version} {stored.data}")
    # what the 2025 code cannot read, it says so
    for bad in (Envelope("OrderPlaced", 3, "order", "A-2030-1", 1, {"orderId": "A-2030-1"}), Envelope("OrderTeleported", 1, "order", "A-2030-2", 1, {})):
        try:
            types.to_event(bad)
        except (NoUpcastPath, UnknownEventType) as exc:
            print(f"{bad.event_type} v{bad.event_version}: {type(exc).__name__}: {exc}")
    repo.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="an existing cluster (default: start a riverbed broker)")
    args = ap.parse_args(argv)
    from riverbed.testing import example_cluster

    with example_cluster(args.bootstrap, "order-upcast") as bootstrap:
        run(bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
