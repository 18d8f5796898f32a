"""The strangler fig, first step, in one command:

    .venv/bin/python examples/strangler-fig/run.py

A legacy application keeps writing its `orders` table as it always did. riverbed.connect
captures the table (initial snapshot of the existing rows, then the WAL) into the topic
`legacy.public.orders` as Debezium change events. A new service, which never touches the legacy
database, builds its own read model from the topic (per customer: open orders and total) and
is checked against the legacy database's own answer.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from riverbed.client import ClusterSettings, consumer
from riverbed.connect.config import ConnectorConfig
from riverbed.connect.connector import PostgresConnector
from riverbed.testing import BrokerProcess
from riverbed.testing.servers import PostgresServer


def decimal(field_schema: dict[str, Any], value: str) -> Decimal:
    """A Debezium Decimal (bytes: unscaled two's-complement integer, scale in the schema)."""
    unscaled = int.from_bytes(base64.b64decode(value), "big", signed=True)
    return Decimal(unscaled).scaleb(-int(field_schema["parameters"]["scale"]))


class ReadModel:
    """The new service's own view: order id -> (customer, amount, status)."""

    def __init__(self) -> None:
        self.orders: dict[int, tuple[str, Decimal, str]] = {}
        self.last_pos: dict[int, tuple[int, ...]] = {}

    def apply(self, value: bytes | None) -> None:
        if value is None:  # tombstone after a delete: nothing to do for this model
            return
        event = json.loads(value)
        schema, env = event["schema"], event["payload"]
        row_schema = {f["field"]: f for f in schema["fields"][1]["fields"]}  # the 'after' struct
        row = env["after"] or env["before"]
        # stream position: source.sequence = [commit LSN, change LSN]; a snapshot row sits just
        # before its consistent point (source.lsn)
        src = env["source"]
        pos = (src["lsn"] - 1, 0) if env["op"] == "r" else tuple(int(x) for x in json.loads(src["sequence"]))
        if pos <= self.last_pos.get(row["id"], (-1, -1)):
            return  # a redelivery (at-least-once): already applied
        self.last_pos[row["id"]] = pos
        if env["op"] == "d":
            self.orders.pop(row["id"], None)
        else:
            self.orders[row["id"]] = (row["customer"], decimal(row_schema["amount"], row["amount"]), row["status"])

    def open_by_customer(self) -> dict[str, tuple[int, Decimal]]:
        out: dict[str, tuple[int, Decimal]] = {}
        for customer, amount, status in self.orders.values():
            if status != "shipped":
                n, total = out.get(customer, (0, Decimal(0)))
                out[customer] = (n + 1, total + amount)
        return out


# a one-member demo group: no 3 s wait for more members before the first rebalance
FAST_GROUPS = ["--set", "group.initial.rebalance.delay.ms=0"]


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="strangler-example-"))
    rng = random.Random(5)
    customers = ["acme", "globex", "initech", "umbrella"]
    with PostgresServer(settings={"wal_level": "logical"}) as pg, BrokerProcess(tmp / "broker", extra=FAST_GROUPS) as broker:
        with psycopg.connect(pg.dsn, autocommit=True) as c:  # the legacy schema and its history
            c.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL, status text NOT NULL)")
            for _ in range(50):
                c.execute("INSERT INTO orders (customer, amount, status) VALUES (%s, %s, 'placed')", (rng.choice(customers), Decimal(rng.randint(100, 99999)) / 100))
        cluster = ClusterSettings(broker.bootstrap)
        cdc = ConnectorConfig.from_props({"name": "legacy-orders", "topic.prefix": "legacy", "database.dsn": pg.dsn, "slot.name": "legacy",
                                          "publication.autocreate.mode": "filtered", "table.include.list": "public.orders"})
        connector = PostgresConnector(cdc, cluster)
        worker = threading.Thread(target=connector.run_forever, daemon=True)
        worker.start()
        print("legacy table captured: snapshot of the existing orders, then the WAL -> legacy.public.orders")

        # the legacy application keeps working as before
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            for _ in range(150):
                action = rng.random()
                if action < 0.5:
                    c.execute("INSERT INTO orders (customer, amount, status) VALUES (%s, %s, 'placed')", (rng.choice(customers), Decimal(rng.randint(100, 99999)) / 100))
                elif action < 0.85:
                    c.execute("UPDATE orders SET status = 'shipped' WHERE id = (SELECT id FROM orders WHERE status = 'placed' ORDER BY random() LIMIT 1)")
                else:
                    c.execute("DELETE FROM orders WHERE id = (SELECT id FROM orders WHERE status = 'placed' ORDER BY random() LIMIT 1)")
            legacy = {r[0]: (int(r[1]), r[2]) for r in c.execute("SELECT customer, count(*), sum(amount) FROM orders WHERE status <> 'shipped' GROUP BY customer")}
            changes = c.execute("SELECT count(*) FROM orders").fetchone()[0]  # type: ignore[index]
        print(f"legacy app done: {changes} orders in its table")

        # the new service: its own read model, from the topic only
        model = ReadModel()
        c2 = consumer(cluster, "shipping-read-model", **{"auto.offset.reset": "earliest"})
        c2.subscribe(["legacy.public.orders"])
        deadline = time.monotonic() + 60
        while model.open_by_customer() != legacy and time.monotonic() < deadline:
            m = c2.poll(0.2)
            if m is not None and m.error() is None:
                model.apply(m.value())
        c2.close()
        connector.stop()
        worker.join(30)
        mine = model.open_by_customer()
        for customer in sorted(legacy):
            print(f"{customer}: legacy says {legacy[customer][0]} open orders, {legacy[customer][1]}; new service says {mine.get(customer, (0, 0))[0]}, {mine.get(customer, (0, 0))[1]}")
        same = mine == legacy
        print("read model equals the legacy database" if same else "read model DIFFERS from the legacy database")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
