"""Capture the request frames real clients send (run once by hand; the output is committed).

    .venv/bin/python tests/data/golden/capture.py > tests/data/golden/client_frames.json

An embedded riverbed broker advertises the port of a recording TCP proxy, so every
connection a client opens (bootstrap and broker) goes through the proxy, which keeps the raw
bytes each client sends, split into frames by their size prefix. Each client is told to send
one known record (topic ``golden``, key ``golden-key``, value ``golden-value``, header
``h=golden-header``) under a known client.id, then to read it back in a consumer group
``golden-group-<client>`` and commit offset 1; test_golden_frames.py decodes the frames with
riverbed's generated codec and checks those values. The bytes come from the clients' own
encoders (librdkafka via confluent-kafka, kafka-python, kafkajs), not from riverbed's.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.broker.config import ListenerConfig
from riverbed.testing import EmbeddedBroker, free_port

TOPIC, KEY, VALUE, HEADER = "golden", b"golden-key", b"golden-value", ("h", b"golden-header")


class RecordingProxy:
    def __init__(self, listen_port: int, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.streams: list[bytearray] = []  # client -> broker bytes, one per connection
        self._server = socket.create_server(("127.0.0.1", listen_port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            stream = bytearray()
            self.streams.append(stream)
            threading.Thread(target=self._pump, args=(client, upstream, stream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def frames(self) -> list[bytes]:
        out = []
        for stream in self.streams:
            pos = 0
            while pos + 4 <= len(stream):
                size = struct.unpack_from(">i", stream, pos)[0]
                if pos + 4 + size > len(stream):
                    break
                out.append(bytes(stream[pos : pos + 4 + size]))
                pos += 4 + size
        return out

    def reset(self) -> None:
        self.streams = []


def describe(frame: bytes) -> dict[str, object]:
    key, version = struct.unpack_from(">hh", frame, 4)
    return {"api_key": key, "api_version": version, "frame": frame.hex()}


def main() -> None:
    broker_port, proxy_port = free_port(), free_port()
    listener = ListenerConfig(name="PLAINTEXT", host="127.0.0.1", port=broker_port, advertised_port=proxy_port)
    with EmbeddedBroker(Path(tempfile.mkdtemp()) / "data", listeners=[listener], group_initial_rebalance_delay_ms=0) as b:
        proxy = RecordingProxy(proxy_port, broker_port)
        bootstrap = f"127.0.0.1:{proxy_port}"
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker_port}"})
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(10)
        out: dict[str, list[dict[str, object]]] = {}

        proxy.reset()
        p = Producer({"bootstrap.servers": bootstrap, "client.id": "golden-librdkafka", "enable.idempotence": False, "acks": "all", "linger.ms": 0})
        p.produce(TOPIC, key=KEY, value=VALUE, headers=[HEADER], partition=0)
        assert p.flush(10) == 0
        del p

        c = Consumer({"bootstrap.servers": bootstrap, "client.id": "golden-librdkafka", "group.id": "golden-group-librdkafka", "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([TOPIC])
        m = None
        while m is None or m.error() is not None:
            m = c.poll(1)
        c.commit(message=m, asynchronous=False)
        c.close()
        out["librdkafka"] = [describe(f) for f in proxy.frames()]

        from kafka import KafkaConsumer, KafkaProducer

        proxy.reset()
        kp = KafkaProducer(bootstrap_servers=bootstrap, client_id="golden-kafka-python", acks="all")
        kp.send(TOPIC, key=KEY, value=VALUE, headers=[HEADER], partition=0).get(10)
        kp.close()
        kc = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, client_id="golden-kafka-python", group_id="golden-group-kafka-python", auto_offset_reset="earliest", enable_auto_commit=False)
        while not any(kc.poll(1000).values()):
            pass
        kc.commit()
        kc.close()
        out["kafka-python"] = [describe(f) for f in proxy.frames()]

        proxy.reset()
        node = Path(__file__).resolve().parents[2] / "integration" / "node"
        subprocess.run(["node", str(node / "golden_client.js")], env={**os.environ, "BOOTSTRAP": bootstrap}, check=True, timeout=120)
        out["kafkajs"] = [describe(f) for f in proxy.frames()]
        del b
    import confluent_kafka
    import kafka

    kafkajs = json.loads((Path(__file__).resolve().parents[2] / "integration" / "node" / "node_modules" / "kafkajs" / "package.json").read_text())["version"]
    meta = {
        "how": "tests/data/golden/capture.py: a recording TCP proxy in front of riverbed",
        "clients": {"librdkafka": confluent_kafka.libversion()[0], "confluent-kafka": confluent_kafka.__version__, "kafka-python": kafka.__version__, "kafkajs": kafkajs},
    }
    json.dump({"captured": meta, "frames": out}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
