"""The lecture's schema-registry scenario, in one command:

    .venv/bin/python examples/order-events/run.py                 # starts its own riverbed serve (broker + registry)
    .venv/bin/python examples/order-events/run.py --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081

The producer asks the registry "is this a valid OrderEvent?", writes binary Avro with the
schema id in front; the consumer fetches the schema by id. Then the schema evolves: v2 adds a
field with a default (accepted: BACKWARD compatible), v3 adds a field without one (refused).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, httpx.HTTPError):
            if check():
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up")


@contextlib.contextmanager
def own_cluster() -> Iterator[tuple[str, str]]:
    """`riverbed serve` (which starts its schema registry beside it) in a temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="order-events-"))
    kafka, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "riverbed", "serve", "--listen", f"127.0.0.1:{kafka}", "--data-dir", str(tmp / "data"), "--registry-listen", f"127.0.0.1:{http}", "--no-metrics", "--no-console", "--log-level", "WARNING"])
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", kafka), timeout=1).close() is None, "the broker")
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{http}/", timeout=1).status_code == 200, "the registry")
        yield f"127.0.0.1:{kafka}", f"http://127.0.0.1:{http}"
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def scenario(bootstrap: str, registry: str) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    subject = f"{topic}-value"
    v1, v2, v3 = ((HERE / f"order_event_v{n}.avsc").read_text() for n in (1, 2, 3))
    with SchemaRegistryClient({"url": registry}) as client:
        # producer: the serializer registers v1 (auto.register.schemas) and prefixes the id
        serialize = AvroSerializer(client, v1)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(3):
            value = serialize({"orderId": f"A{100 + i}", "userId": "user_id_bob"}, SerializationContext(topic, MessageField.VALUE))
            producer.produce(topic, key=b"user_id_bob", value=value)
        producer.flush(30)
        print(f"produced 3 OrderEvents to {topic} with schema id {client.get_latest_version(subject).schema_id}")

        # consumer: fetches the writer's schema by the id in each record
        deserialize = AvroDeserializer(client)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"email-service-{topic}", "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 3 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            event = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
            print(f"consumed {event}")
            seen += 1
        consumer.close()
        if seen < 3:
            raise SystemExit("did not consume the 3 events")

        # evolution under the default BACKWARD compatibility
        v2_id = client.register_schema(subject, Schema(v2, "AVRO"))
        print(f"v2 (adds amount with a default) accepted: id {v2_id}")
        try:
            client.register_schema(subject, Schema(v3, "AVRO"))
        except SchemaRegistryError as exc:
            print(f"v3 (adds quantity without a default) refused: HTTP {exc.http_status_code}, {exc.error_message.split(';')[0]}")
        else:
            raise SystemExit("v3 should have been refused")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="a running cluster (default: start riverbed serve)")
    ap.add_argument("--registry", help="a running registry URL (default: start riverbed registry)")
    args = ap.parse_args()
    if args.bootstrap and args.registry:
        scenario(args.bootstrap, args.registry)
    else:
        with own_cluster() as (bootstrap, registry):
            scenario(bootstrap, registry)


if __name__ == "__main__":
    main()
