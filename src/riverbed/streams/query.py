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
from urllib.parse import parse_qs, unquote

from .records import StreamsError
from .serdes import JsonSerde, LongSerde, StringSerde
from .windows import Window, Windowed

if TYPE_CHECKING:
    from .runtime import Runtime
    from .task import Task
    from .topology import StoreSpec, Topology

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


def _time(params: dict[str, str], name: str, default: int) -> int:
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise ValueError(f"{name} must be a time in milliseconds, not {params[name]!r}") from None


def _in(serde: Any, key: Any, params: dict[str, str]) -> bool:
    """Whether a global table's key is in the request's ``from``/``to`` range (serialized bytes)."""
    kb = serde.serialize(key)
    lo = serde.serialize(key_from_text(serde, params["from"])) if "from" in params else None
    hi = serde.serialize(key_from_text(serde, params["to"])) if "to" in params else None
    return (lo is None or kb >= lo) and (hi is None or kb <= hi)


def key_from_text(serde: Any, text: str) -> Any:
    if isinstance(serde, StringSerde):
        return text
    if isinstance(serde, LongSerde):
        return int(text)
    if isinstance(serde, JsonSerde):
        return json.loads(text)
    return text.encode()


_MAX_TIME = (1 << 63) - 1


class StoreQueries:
    """Kafka's ReadOnlyWindowStore / ReadOnlySessionStore / ReadOnlyKeyValueStore queries on a
    running instance (mixed into :class:`~riverbed.streams.runtime.Runtime`).

    Key queries (``query_window``, ``query_session``) are answered by the instance owning the
    key's partition (else :class:`NotLocalError` naming the owner), as ``Runtime.query``. Queries
    without a key (``fetch_all``, ``query_range``, ``query_all``) read only this instance's
    partitions, as a Kafka Streams instance's local stores do: a caller wanting the whole store
    asks every instance (``local_partitions(store)`` says which partitions an answer covers).
    Results are lists, taken under the processing lock (a consistent snapshot per call)."""

    if TYPE_CHECKING:
        topology: Topology
        tasks: dict[tuple[int, int], Task]
        _lock: Any
        _partitions: dict[str, int]

        def _owner_of(self, topics: Any, partition: int) -> str | None: ...

    def _spec(self, store: str, kind: str) -> StoreSpec:
        spec = self.topology.store_specs.get(store)
        actual = None if spec is None else "session" if spec.session else "key-value" if spec.window_size_ms is None else "window"
        if spec is None or actual != kind:
            raise StreamsError(f"{store!r} is not a {kind} store of this application")
        return spec

    def _on_owner(self, store: str, spec: StoreSpec, key: Any, fn: Any) -> Any:
        """``fn(task)`` under the processing lock on the local task holding ``key``'s partition
        of ``store``, or NotLocalError naming the owner (looked up outside the lock)."""
        sub = next(s for s in self.topology.subtopologies if any(x.name == store for x in s.stores))
        n = max(self._partitions.get(t, 0) for t in sub.sources)
        if n <= 0:
            raise StreamsError("the application has not started")
        raw = spec.key_serde.serialize(key)
        if raw is None:
            raise StreamsError("a key is needed")
        p = partition_for(raw, n)
        with self._lock:
            task = self.tasks.get((sub.id, p))
            if task is not None:
                return fn(task)
        raise NotLocalError(store, p, self._owner_of(sub.sources, p))

    def _local_tasks(self, store: str) -> list[Task]:
        return sorted((t for t in self.tasks.values() if store in t.engines), key=lambda t: t.partition)

    def local_partitions(self, store: str) -> list[int]:
        """The partitions of ``store`` this instance holds (what its range answers cover)."""
        with self._lock:
            return [t.partition for t in self._local_tasks(store)]

    def query_window(self, store: str, key: Any, time_from: int = 0, time_to: int = _MAX_TIME) -> list[tuple[Window, Any]]:
        """Kafka's ReadOnlyWindowStore#fetch(key, timeFrom, timeTo): ``key``'s windows of the
        time-window store ``store`` whose start is in ``[time_from, time_to]``, oldest first, as
        ``(Window(start, end), value)``."""
        spec = self._spec(store, "window")
        result: list[tuple[Window, Any]] = self._on_owner(
            store, spec, key, lambda task: task.window_store(store).fetch(key, time_from, time_to))
        return result

    def fetch_all(self, store: str, time_from: int = 0, time_to: int = _MAX_TIME) -> list[tuple[Windowed[Any], Any]]:
        """Kafka's ReadOnlyWindowStore#fetchAll(timeFrom, timeTo) over this instance's
        partitions: every window starting in ``[time_from, time_to]``, as
        ``(Windowed(key, Window), value)``, partition by partition, each by start then key."""
        self._spec(store, "window")
        with self._lock:
            return [(Windowed(k, w), v) for t in self._local_tasks(store)
                    for k, w, v in t.window_store(store).fetch_all(time_from, time_to)]

    def query_session(self, store: str, key: Any) -> list[tuple[Window, Any]]:
        """Kafka's ReadOnlySessionStore#fetch(key): ``key``'s sessions, by end, as
        ``(Window(start, end), aggregate)`` (both ends inclusive)."""
        spec = self._spec(store, "session")

        def sessions(task: Task) -> list[tuple[Window, Any]]:
            ss = task.session_store(store)
            return [(Window(s, e), ss.value_serde.deserialize(v)) for s, e, v in ss.find(ss.key_bytes(key), 0, _MAX_TIME)]

        result: list[tuple[Window, Any]] = self._on_owner(store, spec, key, sessions)
        return result

    def query_range(self, store: str, from_key: Any = None, to_key: Any = None) -> list[tuple[Any, Any]]:
        """Kafka's ReadOnlyKeyValueStore#range(from, to) over this instance's partitions: keys
        from ``from_key`` to ``to_key`` (both inclusive; ``None``: unbounded), by serialized key
        bytes within each partition, partition by partition."""
        self._spec(store, "key-value")
        with self._lock:
            return [kv for t in self._local_tasks(store) for kv in t.kv_store(store).range(from_key, to_key)]

    def query_all(self, store: str) -> list[tuple[Any, Any]]:
        """Kafka's ReadOnlyKeyValueStore#all over this instance's partitions."""
        return self.query_range(store)


class QueryServer:
    """``GET /stores/<store>/<key>`` -> ``{"store", "key", "value", "host"}`` (404 when the key
    has no value), a 307 redirect to the owner for other instances' keys, 503 while no instance
    owns the key's partition."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        rt = runtime

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, qs = self.path.partition("?")
                parts = path.strip("/").split("/")
                params = {k: v[-1] for k, v in parse_qs(qs).items()}
                specs: dict[str, Any] = {**rt.topology.store_specs, **rt.topology.global_stores}
                if len(parts) not in (2, 3) or parts[0] != "stores" or parts[1] not in specs:
                    self._send(404, {"error": "use /stores/<store>/<key> or /stores/<store> with a store of this app"})
                    return
                store = parts[1]
                spec = specs[store]
                kind = "key-value" if store in rt.topology.global_stores else (
                    "session" if spec.session else "key-value" if spec.window_size_ms is None else "window")
                try:
                    if len(parts) == 2:  # no key: this instance's partitions only
                        self._range(store, kind, spec, params)
                        return
                    key = key_from_text(spec.key_serde, unquote(parts[2]))
                    if kind == "window":
                        wins = rt.query_window(store, key, _time(params, "from", 0), _time(params, "to", _MAX_TIME))
                        self._send(200, {"store": store, "key": key, "host": rt.application_server,
                                         "windows": [{"start": w.start, "end": w.end, "value": v} for w, v in wins]})
                        return
                    if kind == "session":
                        sessions = rt.query_session(store, key)
                        self._send(200, {"store": store, "key": key, "host": rt.application_server,
                                         "sessions": [{"start": w.start, "end": w.end, "value": v} for w, v in sessions]})
                        return
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

            def _range(self, store: str, kind: str, spec: Any, params: dict[str, str]) -> None:
                """``GET /stores/<store>``: a key-value store's range (``?from=&to=``, keys,
                inclusive) or all of it, a window store's windows (``?from=&to=``, start times),
                over this instance's partitions (``partitions`` in the answer)."""
                if store in rt.topology.global_stores:
                    rows = [{"key": k, "value": v} for k, v in rt.scan(store)
                            if _in(spec.key_serde, k, params)]
                    self._send(200, {"store": store, "host": rt.application_server, "partitions": "all (global)",
                                     "entries": rows})
                    return
                parts = rt.local_partitions(store)
                if kind == "key-value":
                    lo = key_from_text(spec.key_serde, params["from"]) if "from" in params else None
                    hi = key_from_text(spec.key_serde, params["to"]) if "to" in params else None
                    entries: list[dict[str, Any]] = [{"key": k, "value": v} for k, v in rt.query_range(store, lo, hi)]
                elif kind == "window":
                    entries = [{"key": wk.key, "start": wk.window.start, "end": wk.window.end, "value": v}
                               for wk, v in rt.fetch_all(store, _time(params, "from", 0), _time(params, "to", _MAX_TIME))]
                else:
                    entries = [{"key": wk.key, "start": wk.window.start, "end": wk.window.end, "value": v}
                               for wk, v in rt.scan(store)]
                self._send(200, {"store": store, "host": rt.application_server, "partitions": parts, "entries": entries})

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
