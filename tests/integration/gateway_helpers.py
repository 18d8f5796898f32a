"""Shared pieces of the gateway tests: a gateway on a real broker over real HTTP, and a reader
of what landed on a topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from riverbed.gateway import Gateway, GatewayConfig
from riverbed.web import HttpServer


@contextmanager
def running_gateway(doc: Mapping[str, Any], bootstrap: str, env: Mapping[str, str] | None = None) -> Iterator[tuple[Gateway, str]]:
    doc = {**doc, "cluster": {"bootstrap.servers": bootstrap}}
    gw = Gateway(GatewayConfig.from_mapping(doc, env or {}))
    server = HttpServer(gw.app).start_in_thread()
    try:
        yield gw, server.url
    finally:
        server.stop()


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 20.0, settle: float = 0.0) -> list[Any]:
    """Every record of `topic` (partition 0) once at least `expect` are there, then `settle`
    more seconds of reading (to see extra records that should not be there)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        until: float | None = None
        while time.monotonic() < deadline:
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    out.append(m)
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(str(m.error()))
            if len(out) >= expect:
                until = until or time.monotonic() + settle
                if time.monotonic() >= until:
                    break
        return out
    finally:
        c.close()
