"""Interactive queries: a key-value store's current value by key, answered by the instance that
owns the key's partition, from Python (``Runtime.query``) and over HTTP
(``application_server="host:port"``: ``GET /stores/<store>/<key>``; another instance's keys are
answered with a 307 redirect to it).

Which instance owns a partition comes from the consumer group: each instance's client id is
``<application id>@<application server>``, and the group's description lists every member's
client id and assignment. The key's partition is computed with Kafka's default partitioner
(murmur2 of the serialized key, as Java clients and riverbed.streams' own producer do), so
source topics written with another partitioner (librdkafka's default is CRC32-based) must set
``partitioner=murmur2_random`` for queries of tables read directly from them.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .records import StreamsError
from .serdes import JsonSerde, LongSerde, StringSerde

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("riverbed.streams")


class NotLocalError(StreamsError):
    """The key belongs to another instance (``owner``: its application server, or None)."""

    def __init__(self, store: str, partition: int, owner: str | None) -> None:
        super().__init__(f"store {store} partition {partition} is owned by {owner or 'no instance right now'}")
        self.partition = partition
        self.owner = owner


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 hash (seed 0x9747b28c), as a signed 32-bit integer."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    i = 0
    while length - i >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
        i += 4
    rest = length - i
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def key_from_text(serde: Any, text: str) -> Any:
    if isinstance(serde, StringSerde):
        return text
    if isinstance(serde, LongSerde):
        return int(text)
    if isinstance(serde, JsonSerde):
        return json.loads(text)
    return text.encode()


class QueryServer:
    """``GET /stores/<store>/<key>`` -> ``{"store", "key", "value", "host"}`` (404 when the key
    has no value), a 307 redirect to the owner for other instances' keys, 503 while no instance
    owns the key's partition."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        rt = runtime

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                specs: dict[str, Any] = {**rt.topology.store_specs, **rt.topology.global_stores}
                if len(parts) != 3 or parts[0] != "stores" or parts[1] not in specs:
                    self._send(404, {"error": "use /stores/<store>/<key> with a key-value store of this app"})
                    return
                store, text = parts[1], unquote(parts[2])
                try:
                    key = key_from_text(specs[store].key_serde, text)
                    value = rt.query(store, key)
                except NotLocalError as e:
                    if e.owner is None:
                        self._send(503, {"error": str(e)})
                        return
                    self.send_response(307)
                    self.send_header("Location", f"http://{e.owner}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                except (StreamsError, ValueError) as e:
                    self._send(400, {"error": str(e)})
                    return
                body = {"store": store, "key": key, "value": value, "host": rt.application_server}
                self._send(200 if value is not None else 404, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("query server: " + fmt, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="streams-query", daemon=True)

    def start(self) -> QueryServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
