"""The lecture's transactional outbox, end to end, in one command:

    .venv/bin/python examples/outbox-user-created/run.py

A REST endpoint (riverbed.web) creates a user: the `users` row and an `event_outbox` row are
written in ONE PostgreSQL transaction (riverbed.connect.write_outbox_event). riverbed.connect
taps the WAL (logical replication, pgoutput), Debezium's outbox EventRouter turns each outbox
insert into a record on `outbox.event.User` keyed by the user id with the event id in a header,
and a welcome-mail service consumes the topic, dropping redelivered events by that id.

Everything is real and private to the run: a PostgreSQL server (initdb in a temp dir,
wal_level=logical), a riverbed broker process, the HTTP server, the connector, the consumer.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from riverbed.client import ClusterSettings, consumer
from riverbed.connect.config import ConnectorConfig
from riverbed.connect.connector import PostgresConnector
from riverbed.connect.outbox import OUTBOX_DDL, write_outbox_event, write_outbox_event_async
from riverbed.testing import BrokerProcess
from riverbed.testing.servers import PostgresServer
from riverbed.web import HttpServer, JsonError, create_app, json_body, json_response


def users_api(dsn: str) -> Any:
    async def create_user(request: Request) -> Response:
        body = await json_body(request, max_bytes=64 * 1024)
        if not isinstance(body, dict) or not isinstance(body.get("email"), str) or "@" not in body["email"]:
            raise JsonError(422, 422, "a JSON object with an 'email' is required")
        name = str(body.get("name", ""))
        try:
            async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
                cur = await conn.execute("INSERT INTO users (email, name) VALUES (%s, %s) RETURNING id", (body["email"], name))
                row = await cur.fetchone()
                assert row is not None
                # the event, in the same transaction as the user: both commit or neither does
                await write_outbox_event_async(conn, "User", row[0], "UserCreated", {"id": row[0], "email": body["email"], "name": name})
        except psycopg.errors.UniqueViolation:
            raise JsonError(409, 409, f"user {body['email']} exists") from None
        return json_response({"id": row[0]}, 201)

    return create_app([Route("/users", create_user, methods=["POST"])])


# a one-member demo group: no 3 s wait for more members before the first rebalance
FAST_GROUPS = ["--set", "group.initial.rebalance.delay.ms=0"]


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="outbox-example-"))
    with PostgresServer(settings={"wal_level": "logical"}) as pg, BrokerProcess(tmp / "broker", extra=FAST_GROUPS) as broker:
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            c.execute("CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, name text)")
            c.execute(OUTBOX_DDL.format(table="event_outbox"))
        cluster = ClusterSettings(broker.bootstrap)
        cdc = ConnectorConfig.from_props({
            "name": "users-outbox", "topic.prefix": "app", "database.dsn": pg.dsn, "slot.name": "outbox",
            "publication.autocreate.mode": "filtered", "table.include.list": "public.event_outbox",
            "transforms": "outbox", "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
            "transforms.outbox.table.expand.json.payload": "true",
            "transforms.outbox.table.fields.additional.placement": "type:header:eventType",
        })
        connector = PostgresConnector(cdc, cluster)
        worker = threading.Thread(target=connector.run_forever, daemon=True)
        worker.start()
        while connector.stats.state != "streaming":
            time.sleep(0.05)
        print("connector streaming: outbox rows -> outbox.event.<aggregatetype>")

        http = HttpServer(users_api(pg.dsn)).start_in_thread()
        # the same helper for code that holds its own psycopg transaction (a batch import, say)
        with psycopg.connect(pg.dsn) as conn:
            uid = conn.execute("INSERT INTO users (email, name) VALUES ('carol@example.com', 'Carol') RETURNING id").fetchone()[0]  # type: ignore[index]
            write_outbox_event(conn, "User", uid, "UserCreated", {"id": uid, "email": "carol@example.com", "name": "Carol"})
        try:
            for body in ({"email": "alice@example.com", "name": "Alice"}, {"email": "bob@example.com", "name": "Bob"},
                         {"email": "alice@example.com", "name": "Alice again"}, {"name": "no email"}):
                r = httpx.post(f"{http.url}/users", json=body)
                print(f"POST /users {json.dumps(body)} -> {r.status_code} {r.text}")
        finally:
            http.stop()

        # the welcome-mail service: a plain Kafka consumer of the outbox topic
        mail = consumer(cluster, "welcome-mail", **{"auto.offset.reset": "earliest"})
        mail.subscribe(["outbox.event.User"])
        seen: set[bytes] = set()
        sent = 0
        deadline = time.monotonic() + 60
        while sent < 3 and time.monotonic() < deadline:
            m = mail.poll(0.2)
            if m is None or m.error() is not None:
                continue
            headers = dict(m.headers() or [])
            event_id = headers["id"]
            if event_id in seen:  # at-least-once delivery: drop a redelivered event
                continue
            seen.add(event_id)
            event = json.loads(m.value())
            sent += 1
            print(f"welcome mail to {event['email']} (user {m.key().decode()}, {headers['eventType'].decode()}, event {event_id.decode()[:8]}...)")
        mail.close()
        connector.stop()
        worker.join(30)
        with psycopg.connect(pg.dsn) as c:
            users = c.execute("SELECT count(*) FROM users").fetchone()[0]  # type: ignore[index]
        print(f"users: {users}, welcome mails: {sent}")
        return 0 if sent == 3 and users == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
