"""CQRS read models: projectors that consume event topics into PostgreSQL or Redis.

- ``PostgresProjector``: each batch's model changes, the per-aggregate versions and the
  consumed offsets are committed in ONE database transaction; on start the consumer resumes at
  the stored offsets. A crash at any point leaves the model and the offsets in step: exactly
  once.
- ``RedisProjector``: JSON documents carry the aggregate version they include (``_version``);
  an event at or below it is ignored (idempotent by version), and the offsets are written in
  the same MULTI/EXEC as the documents.

Both: the ordering defence (an event older than the model's version of its aggregate is
ignored and counted, never applied over a newer one), ``rebuild()`` into a fresh model from the
beginning of the topics with an atomic switch, and ``lag()``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverbed import client
from riverbed.client import ClusterSettings

from .aggregate import TypeRegistry
from .envelope import Envelope
from .errors import InvalidEnvelope

log = logging.getLogger("riverbed.patterns.projections")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


class _Projector:
    """The Kafka side: a consumer assigned every partition of ``topics`` at the model's offsets."""

    def __init__(self, settings: ClusterSettings, topics: list[str], types: TypeRegistry | None, batch: int) -> None:
        self.settings, self.topics, self.types, self.batch = settings, topics, types, batch
        self.applied = 0
        self.ignored = 0  # events at or below the model's version of their aggregate
        self.skipped = 0  # records that are not event envelopes
        self._consumer = client.consumer(settings, f"riverbed-projector-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed", "fetch.wait.max.ms": 20, "auto.offset.reset": "earliest", "enable.partition.eof": True})
        # where the consumer last hit the end of each partition: past transaction markers,
        # which are offsets too but never reach the model
        self._eof: dict[tuple[str, int], int] = {}
        self.partitions: list[TopicPartition] = []
        for topic in topics:
            md = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
            if md is None or md.error is not None:
                raise ValueError(f"topic {topic}: {md.error if md is not None else 'not found'}")
            self.partitions.extend(TopicPartition(topic, p) for p in sorted(md.partitions))

    def _assign(self, offsets: dict[tuple[str, int], int]) -> None:
        self._consumer.assign([TopicPartition(tp.topic, tp.partition, offsets.get((tp.topic, tp.partition), 0)) for tp in self.partitions])

    def _fetch(self, timeout: float) -> list[Envelope]:
        msgs: list[Any] = self._consumer.consume(self.batch, timeout)
        out: list[Envelope] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                self._eof[(m.topic(), m.partition())] = m.offset()
                continue
            try:
                env = Envelope.decode(m.value(), m.partition(), m.offset(), m.topic())
            except InvalidEnvelope as exc:
                log.warning("projector skips %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
                self.skipped += 1
                env = Envelope("", 0, "", "", 0, {}, partition=m.partition(), offset=m.offset(), topic=m.topic())  # keeps the offset moving
            else:
                if self.types is not None:
                    env = self.types.upcast(env)  # UnknownEventType / NoUpcastPath stop the projector: nothing is lost
            out.append(env)
        return out

    def ends(self) -> dict[tuple[str, int], int]:
        out = {}
        for tp in self.partitions:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=30)
            out[(tp.topic, tp.partition)] = high
        return out

    def lag(self) -> dict[str, int]:
        """Records not yet in the model, per ``topic[partition]`` and in ``total``."""
        ends = self.ends()
        done = self._done()
        out = {f"{t}[{p}]": max(0, end - done.get((t, p), 0)) for (t, p), end in ends.items()}
        out["total"] = sum(out.values())
        return out

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        raise NotImplementedError

    def _done(self) -> dict[tuple[str, int], int]:
        """How far the model is, per partition (the stored offsets, or the end the consumer
        reached past trailing transaction markers when that is further)."""
        done = self.stored_offsets()
        for k, v in self._eof.items():
            if v > done.get(k, 0):
                done[k] = v
        return done

    def poll(self, timeout: float = 0.5) -> int:
        raise NotImplementedError

    def run_until_caught_up(self, timeout: float = 120.0) -> None:
        """Polls until the model holds every record that was in the topics when called."""
        ends = self.ends()
        deadline = time.monotonic() + timeout
        while True:
            done = self._done()
            if all(done.get(k, 0) >= v for k, v in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"projector not caught up after {timeout} s: lag {self.lag()}")
            self.poll(0.2)

    def run(self, stop: Callable[[], bool], timeout: float = 0.5) -> None:
        while not stop():
            self.poll(timeout)

    def close(self) -> None:
        self._consumer.close()


class PostgresProjection(Protocol):
    def setup(self, cur: Any, schema: str) -> None:
        """Creates the model's tables in ``schema`` (called once per fresh model)."""

    def apply(self, cur: Any, schema: str, event: Envelope) -> None:
        """Updates the model by one event (in the batch's transaction)."""


class PostgresProjector(_Projector):
    """A read model in PostgreSQL schema ``name``; offsets and versions in the same schema,
    written in the same transaction as the model."""

    def __init__(self, settings: ClusterSettings, topics: list[str], dsn: str, name: str, projection: PostgresProjection,
                 types: TypeRegistry | None = None, batch: int = 1000, schema: str | None = None) -> None:
        import psycopg

        if not _NAME.match(name):
            raise ValueError(f"projection name {name!r} must be a lower-case SQL identifier")
        super().__init__(settings, topics, types, batch)
        self.dsn, self.name, self.projection = dsn, name, projection
        self.schema = schema or name
        self._db = psycopg.connect(dsn)
        self._ensure(self.schema)
        self._assign(self.stored_offsets())

    def _ensure(self, schema: str) -> None:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name=%s", (schema,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE SCHEMA {schema}")
                cur.execute(f"CREATE TABLE {schema}.riverbed_offsets (topic TEXT, part INTEGER, next_offset BIGINT NOT NULL, PRIMARY KEY (topic, part))")
                cur.execute(f"CREATE TABLE {schema}.riverbed_versions (aggregate_type TEXT, aggregate_id TEXT, version BIGINT NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id))")
                self.projection.setup(cur, schema)

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute(f"SELECT topic, part, next_offset FROM {self.schema}.riverbed_offsets")
            return {(t, int(p)): int(o) for t, p, o in cur.fetchall()}

    def poll(self, timeout: float = 0.5) -> int:
        events = self._fetch(timeout)
        if not events:
            return 0
        s = self.schema
        with self._db.transaction(), self._db.cursor() as cur:
            keys = list({(e.aggregate_type, e.aggregate_id) for e in events if e.event_type})
            versions: dict[tuple[str, str], int] = {}
            if keys:
                cur.execute(f"SELECT aggregate_type, aggregate_id, version FROM {s}.riverbed_versions WHERE (aggregate_type, aggregate_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                            ([k[0] for k in keys], [k[1] for k in keys]))
                versions = {(t, i): int(v) for t, i, v in cur.fetchall()}
            changed: dict[tuple[str, str], int] = {}
            offsets: dict[tuple[str, int], int] = {}
            for e in events:
                offsets[(e.topic, e.partition)] = e.offset + 1
                if not e.event_type:
                    continue
                k = (e.aggregate_type, e.aggregate_id)
                if e.aggregate_version <= versions.get(k, 0):
                    self.ignored += 1
                    continue
                self.projection.apply(cur, s, e)
                versions[k] = changed[k] = e.aggregate_version
                self.applied += 1
            if changed:
                cur.executemany(f"INSERT INTO {s}.riverbed_versions VALUES (%s, %s, %s) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version",
                                [(t, i, v) for (t, i), v in changed.items()])
            cur.executemany(f"INSERT INTO {s}.riverbed_offsets VALUES (%s, %s, %s) ON CONFLICT (topic, part) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                            [(t, p, o) for (t, p), o in offsets.items()])
        return len(events)

    def rebuild(self, timeout: float = 600.0) -> None:
        """Projects every event from the beginning into a fresh schema, then switches it in
        for the live one in one transaction (readers see the old model or the new, never a
        mix) and continues from the new model's offsets."""
        fresh = f"{self.name}__rebuild"
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {fresh} CASCADE")
        builder = PostgresProjector(self.settings, self.topics, self.dsn, self.name, self.projection, self.types, self.batch, schema=fresh)
        try:
            builder.run_until_caught_up(timeout)
        finally:
            builder.close()
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute(f"ALTER SCHEMA {self.schema} RENAME TO {self.name}__old")
            cur.execute(f"ALTER SCHEMA {fresh} RENAME TO {self.schema}")
            cur.execute(f"DROP SCHEMA {self.name}__old CASCADE")
        log.info("projection %s rebuilt and switched", self.name)
        self._assign(self.stored_offsets())

    def close(self) -> None:
        super().close()
        self._db.close()


class RedisProjection(Protocol):
    def apply(self, doc: dict[str, str], event: Envelope) -> dict[str, str] | None:
        """The aggregate's document after ``event`` (``doc`` is {} for a new one); None deletes it."""


class RedisProjector(_Projector):
    """A read model of one JSON document per aggregate at ``<prefix>:<generation>:<aggregate
    id>``, with ``_version``; ``<prefix>:current`` names the live generation (switched by
    ``rebuild``). A batch reads its documents with one MGET and writes them, with the offsets,
    in one MULTI/EXEC."""

    def __init__(self, settings: ClusterSettings, topics: list[str], redis_url: str, prefix: str, projection: RedisProjection,
                 types: TypeRegistry | None = None, batch: int = 2000, generation: str | None = None) -> None:
        import redis

        super().__init__(settings, topics, types, batch)
        self.prefix, self.projection, self.url = prefix, projection, redis_url
        self._r: Any = redis.Redis.from_url(redis_url, decode_responses=True)
        current = self._r.get(f"{prefix}:current")
        if generation is None:
            generation = str(current) if current is not None else "g1"
            if current is None:
                self._r.set(f"{prefix}:current", generation, nx=True)
        self.generation = generation
        self._assign(self.stored_offsets())

    def _key(self, aggregate_id: str, generation: str | None = None) -> str:
        return f"{self.prefix}:{generation or self.generation}:{aggregate_id}"

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        raw = self._r.hgetall(f"{self.prefix}:{self.generation}:__offsets")
        out = {}
        for k, v in raw.items():
            topic, _, p = str(k).rpartition(":")
            out[(topic, int(p))] = int(v)
        return out

    def get(self, aggregate_id: str) -> dict[str, str] | None:
        """The live model's document of an aggregate (readers resolve the generation)."""
        gen = self._r.get(f"{self.prefix}:current") or self.generation
        raw = self._r.get(self._key(aggregate_id, str(gen)))
        return None if raw is None else dict(json.loads(raw))

    def poll(self, timeout: float = 0.5) -> int:
        events = self._fetch(timeout)
        if not events:
            return 0
        ids = list(dict.fromkeys(e.aggregate_id for e in events if e.event_type))
        docs: dict[str, dict[str, str]] = {}
        if ids:  # one MGET for the batch's documents
            for i, raw in zip(ids, self._r.mget([self._key(i) for i in ids]), strict=True):
                docs[i] = {} if raw is None else json.loads(raw)
        changed: set[str] = set()
        offsets: dict[str, int] = {}
        for e in events:
            offsets[f"{e.topic}:{e.partition}"] = e.offset + 1
            if not e.event_type:
                continue
            doc = docs[e.aggregate_id]
            if e.aggregate_version <= int(doc.get("_version", 0)):
                self.ignored += 1
                continue
            new = self.projection.apply(dict(doc), e)
            docs[e.aggregate_id] = {} if new is None else {**new, "_version": str(e.aggregate_version)}
            changed.add(e.aggregate_id)
            self.applied += 1
        write = self._r.pipeline(transaction=True)  # documents and offsets in one MULTI/EXEC
        present = {self._key(i): json.dumps(docs[i], separators=(",", ":")) for i in changed if docs[i]}
        gone = [self._key(i) for i in changed if not docs[i]]
        if present:
            write.mset(present)
        if gone:
            write.delete(*gone)
        write.hset(f"{self.prefix}:{self.generation}:__offsets", mapping=offsets)
        write.execute()
        return len(events)

    def rebuild(self, timeout: float = 600.0) -> None:
        """Projects everything into a new generation, then points ``<prefix>:current`` at it
        (one SET: atomic for readers) and deletes the old generation's keys."""
        old = self.generation
        fresh = f"g{int(old[1:]) + 1}" if old[1:].isdigit() else "g1"
        for k in self._r.scan_iter(f"{self.prefix}:{fresh}:*"):
            self._r.delete(k)
        builder = RedisProjector(self.settings, self.topics, self.url, self.prefix, self.projection, self.types, self.batch, generation=fresh)
        try:
            builder.run_until_caught_up(timeout)
        finally:
            builder.close()
        self._r.set(f"{self.prefix}:current", fresh)
        self.generation = fresh
        for k in self._r.scan_iter(f"{self.prefix}:{old}:*", count=1000):
            self._r.delete(k)
        self._assign(self.stored_offsets())

    def close(self) -> None:
        super().close()
        self._r.close()
