"""The lecture's SQL examples, end to end, with one command:

    python examples/sql/run.py                      # starts its own `riverbed serve` and `riverbed sql serve`
    python examples/sql/run.py --bootstrap HOST:PORT --server http://127.0.0.1:8088

Runs lecture.sql (VIP_USERS; a revenue-per-minute table; orders joined with customers; order
statuses joined with customers by foreign key) and
data.sql (INSERT INTO ... VALUES) through the SQL server's REST API, then asks it:

1. ``SELECT * FROM vip_users;``                                   the VIP users (a pull query on a stream)
2. ``SELECT * FROM revenue_per_minute WHERE shop = 'north';``   revenue per minute (a pull query by key)
3. ``SELECT * FROM orders_enriched;``                            the orders with their customers
4. ``SELECT * FROM order_status_customers;``                     each order's latest status with its customer

and prints each answer as a table, then as one JSON line {"query": ..., "columns": ..., "rows": ...}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from riverbed.cli.sql_commands import format_table
from riverbed.testing import BrokerProcess, free_port

HERE = Path(__file__).resolve().parent


def ksql(http: httpx.Client, server: str, text: str) -> list[dict[str, Any]]:
    r = http.post(f"{server}/ksql", json={"ksql": text, "streamsProperties": {"auto.offset.reset": "earliest"}})
    if r.status_code != 200:
        raise SystemExit(f"statement failed: {r.json().get('message')}\n{r.json().get('statementText')}")
    return list(r.json())


def pull(http: httpx.Client, server: str, sql: str, done: Callable[[list[list[Any]]], bool],
         timeout: float = 60) -> tuple[list[str], list[list[Any]]]:
    """Ask until the answer is complete (the persistent queries run in the background)."""
    deadline = time.monotonic() + timeout
    cols: list[str] = []
    rows: list[list[Any]] = []
    while time.monotonic() < deadline:
        r = http.post(f"{server}/query-stream", json={"sql": sql}, headers={"Accept": "application/json"})
        if r.status_code == 200:
            body = r.json()
            cols, rows = body[0]["columnNames"], body[1:]
            if done(rows):
                return cols, rows
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for: {sql} (last answer {rows})")


def wait_for_table(bootstrap: str, group: str, topic: str, timeout: float = 60) -> None:
    """Until the join query has read (and committed) every customer: a stream-table join sees
    the table as it is when each order arrives."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-probe"})
    md = c.list_topics(topic, timeout=10)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.topics[topic].partitions}
    c.close()
    from confluent_kafka import ConsumerGroupTopicPartitions

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in ends])
        res = admin.list_consumer_group_offsets([req])[group].result(10)
        got = {tp.partition: tp.offset for tp in res.topic_partitions}
        if all(end == 0 or got.get(p, -1) >= end for p, end in ends.items()):
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {group} to read {topic}")


def scenario(bootstrap: str, server: str) -> list[dict[str, Any]]:
    http = httpx.Client(timeout=60)
    created = ksql(http, server, (HERE / "lecture.sql").read_text())
    join_query = next(e["commandStatus"]["queryId"] for e in created
                      if e.get("commandStatus", {}).get("queryId", "") and "ORDERS_ENRICHED" in e["commandStatus"]["queryId"])
    data = (HERE / "data.sql").read_text().splitlines()
    ksql(http, server, "\n".join(x for x in data if "INTO orders" not in x))  # users and customers first
    wait_for_table(bootstrap, f"_confluent-ksql-default_query_{join_query}", "customers")
    ksql(http, server, "\n".join(x for x in data if "INTO orders" in x))
    answers = []
    for sql, done in [
        ("SELECT * FROM vip_users;", lambda rows: len(rows) == 2),
        ("SELECT * FROM revenue_per_minute WHERE shop = 'north';", lambda rows: [r[-1] for r in rows] == [2, 1]),
        ("SELECT order_id, customer, country, amount FROM orders_enriched;", lambda rows: len(rows) == 4),
        ("SELECT * FROM order_status_customers;",  # (o4's customer c9 does not exist: an inner join has no row)
         lambda rows: len(rows) == 2 and ["o1", "shipped", "Ada", "NO"] in rows),
    ]:
        cols, rows = pull(http, server, sql, done)
        rows = sorted(rows, key=json.dumps)
        print(f"ksql> {sql}", file=sys.stderr)
        print(format_table(cols, rows), file=sys.stderr)
        answers.append({"query": sql, "columns": cols, "rows": rows})
    http.close()
    return answers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="an existing cluster (default: start a riverbed broker)")
    ap.add_argument("--server", help="an existing riverbed sql server's URL (default: start one)")
    args = ap.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    broker = None
    tmp = Path(tempfile.mkdtemp(prefix="riverbed-sql-example-"))
    try:
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = BrokerProcess(tmp / "data", extra=["--set", "group.initial.rebalance.delay.ms=0"]).start()
            bootstrap = broker.bootstrap
        server = args.server
        if server is None:
            port = free_port()
            log = open(tmp / "sql-server.log", "wb")  # noqa: SIM115 - owned by the child
            procs.append(subprocess.Popen([sys.executable, "-m", "riverbed", "sql", "serve", "--bootstrap", bootstrap,
                                           "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp / "state"),
                                           "--set", "commit.interval.ms=200"], stdout=log, stderr=log))
            server = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{server}/healthcheck", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the SQL server did not start: {(tmp / 'sql-server.log').read_text()[-2000:]}")
                time.sleep(0.1)
        for answer in scenario(bootstrap, server):
            print(json.dumps(answer))
        return 0
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if broker is not None:
            broker.terminate()


if __name__ == "__main__":
    sys.exit(main())
