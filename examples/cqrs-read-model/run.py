"""CQRS: commands append events; read models in Redis and PostgreSQL serve the queries. One command:

    .venv/bin/python examples/cqrs-read-model/run.py        # own broker, Redis and PostgreSQL servers

The write side is an event-sourced shopping cart (riverbed.patterns). Two projectors consume
its events: one keeps a document per cart in Redis (idempotent by version), one keeps cart
and per-product tables in PostgreSQL (model and consumed offsets in one transaction). A
redelivered old event is ignored by both; the PostgreSQL model is rebuilt from the beginning
into a fresh schema and switched in atomically; each projector reports its lag.
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
    TypeRegistry,
)
from riverbed.patterns.projections import PostgresProjector, RedisProjector

types = TypeRegistry()


@types.command("AddItem")
@dataclass(frozen=True)
class AddItem:
    sku: str
    qty: int
    price_cents: int


@types.command("CheckOut")
@dataclass(frozen=True)
class CheckOut:
    pass


@types.event("ItemAdded")
@dataclass(frozen=True)
class ItemAdded:
    sku: str
    qty: int
    price_cents: int


@types.event("CheckedOut")
@dataclass(frozen=True)
class CheckedOut:
    total_cents: int


@dataclass
class Cart(Aggregate):
    aggregate_type = "cart"
    total_cents: int = 0
    checked_out: bool = False

    def decide(self, command: Any) -> Sequence[Any]:
        if self.checked_out:
            raise CommandRejected("cart already checked out")
        if isinstance(command, AddItem):
            return [ItemAdded(command.sku, command.qty, command.price_cents)]
        if isinstance(command, CheckOut):
            return [CheckedOut(self.total_cents)]
        raise CommandRejected(f"unknown command {command!r}")

    def apply(self, event: Any) -> None:
        if isinstance(event, ItemAdded):
            self.total_cents += event.qty * event.price_cents
        elif isinstance(event, CheckedOut):
            self.checked_out = True


class CartDocument:
    """Redis: one hash per cart (items, total, status)."""

    def apply(self, doc: dict[str, str], e: Envelope) -> dict[str, str] | None:
        if e.event_type == "ItemAdded":
            return {**doc, "items": str(int(doc.get("items", 0)) + e.data["qty"]), "total_cents": str(int(doc.get("total_cents", 0)) + e.data["qty"] * e.data["price_cents"]), "status": "open"}
        if e.event_type == "CheckedOut":
            return {**doc, "status": "checked out"}
        return doc


class SalesTables:
    """PostgreSQL: carts and units sold per product."""

    def setup(self, cur: Any, schema: str) -> None:
        cur.execute(f"CREATE TABLE {schema}.carts (id TEXT PRIMARY KEY, total_cents BIGINT NOT NULL, status TEXT NOT NULL)")
        cur.execute(f"CREATE TABLE {schema}.product_sales (sku TEXT PRIMARY KEY, units BIGINT NOT NULL)")

    def apply(self, cur: Any, schema: str, e: Envelope) -> None:
        if e.event_type == "ItemAdded":
            cur.execute(f"INSERT INTO {schema}.carts VALUES (%s, %s, 'open') ON CONFLICT (id) DO UPDATE SET total_cents = carts.total_cents + EXCLUDED.total_cents",
                        (e.aggregate_id, e.data["qty"] * e.data["price_cents"]))
            cur.execute(f"INSERT INTO {schema}.product_sales VALUES (%s, %s) ON CONFLICT (sku) DO UPDATE SET units = product_sales.units + EXCLUDED.units", (e.data["sku"], e.data["qty"]))
        elif e.event_type == "CheckedOut":
            cur.execute(f"UPDATE {schema}.carts SET status = 'checked out' WHERE id = %s", (e.aggregate_id,))


def run(bootstrap: str, redis_url: str, pg_dsn: str) -> None:
    import psycopg

    settings = ClusterSettings(bootstrap=bootstrap)
    store = EventStore(settings, "cart", partitions=3, prefix="shop.")
    store.ensure_topics()
    owner = AggregateOwner(store, Cart, types, "shop")
    owner.wait_owned()
    for cart, items in {"cart-1": [("mug", 2, 1_200), ("tea", 1, 850)], "cart-2": [("mug", 1, 1_200)], "cart-3": [("tea", 3, 850), ("pot", 1, 4_500)]}.items():
        for sku, qty, price in items:
            owner.execute(cart, AddItem(sku, qty, price)).raise_for_status()
    owner.execute("cart-1", CheckOut()).raise_for_status()
    owner.execute("cart-3", CheckOut()).raise_for_status()
    print(f"write side: 7 events appended to {store.events_topic}; add to a checked-out cart -> {owner.execute('cart-1', AddItem('mug', 1, 1_200)).reason}")
    owner.close()

    redis_proj = RedisProjector(settings, [store.events_topic], redis_url, "carts", CartDocument(), types=types)
    pg_proj = PostgresProjector(settings, [store.events_topic], pg_dsn, "sales", SalesTables(), types=types)
    print(f"lag before projecting: redis {redis_proj.lag()['total']}, postgresql {pg_proj.lag()['total']}")
    redis_proj.run_until_caught_up(60)
    pg_proj.run_until_caught_up(60)
    print(f"lag after projecting: redis {redis_proj.lag()['total']}, postgresql {pg_proj.lag()['total']}")
    for cart in ("cart-1", "cart-2", "cart-3"):
        print(f"redis {cart}: {dict(sorted((redis_proj.get(cart) or {}).items()))}")
    with psycopg.connect(pg_dsn) as db:
        print(f"postgresql carts: {db.execute('SELECT id, total_cents, status FROM sales.carts ORDER BY id').fetchall()}")
        print(f"postgresql units sold: {db.execute('SELECT sku, units FROM sales.product_sales ORDER BY sku').fetchall()}")
    # an old event delivered again (a retry, a replay): both models ignore it
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(store.events_topic, key=b"cart-2", value=Envelope("ItemAdded", 1, "cart", "cart-2", 1, {"sku": "mug", "qty": 1, "price_cents": 1_200}).encode(), partition=store.partition_for("cart-2"))
    p.flush(30)
    redis_proj.run_until_caught_up(60)
    pg_proj.run_until_caught_up(60)
    print(f"redelivered cart-2 v1: ignored by redis {redis_proj.ignored}, by postgresql {pg_proj.ignored}; cart-2 total still {(redis_proj.get('cart-2') or {}).get('total_cents')}")
    pg_proj.rebuild(60)
    redis_proj.rebuild(60)
    with psycopg.connect(pg_dsn) as db:
        rows = db.execute("SELECT id, total_cents, status FROM sales.carts ORDER BY id").fetchall()
    print(f"rebuilt: postgresql carts {rows}; redis generation {redis_proj.generation}, cart-3 {dict(sorted((redis_proj.get('cart-3') or {}).items()))}")
    redis_proj.close()
    pg_proj.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="an existing cluster (default: start a riverbed broker)")
    ap.add_argument("--redis-url", help="an existing Redis (default: start a private redis-server)")
    ap.add_argument("--postgres-dsn", help="an existing PostgreSQL (default: start a private server)")
    args = ap.parse_args(argv)
    from contextlib import ExitStack

    from riverbed.testing import example_cluster
    from riverbed.testing.servers import PostgresServer, RedisServer

    with ExitStack() as stack:
        redis_url, dsn = args.redis_url, args.postgres_dsn
        bootstrap = stack.enter_context(example_cluster(args.bootstrap, "cqrs"))
        if not redis_url:
            redis_url = stack.enter_context(RedisServer()).url
        if not dsn:
            dsn = stack.enter_context(PostgresServer()).dsn
        run(bootstrap, redis_url, dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
