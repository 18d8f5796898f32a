"""Global tables (Kafka's ``GlobalKTable``): every instance holds all partitions of the topic.

A global table's store is filled from the topic itself, which is its changelog (no
``-changelog`` topic, as Kafka Streams' global stores): the runtime reads every partition of it
to the end before processing starts, then keeps reading it while running. Stream records join
it by a key they compute (``key_mapper``), so the stream need not be co-partitioned with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .nodes import Node
from .records import Record, StreamsError
from .serdes import Serde
from .stores import KeyValueStore

if TYPE_CHECKING:
    from .task import Task

log = logging.getLogger("riverbed.streams")


@dataclass
class GlobalStoreSpec:
    name: str
    topic: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]
    on_error: str = "fail"  # a record that does not deserialize: "fail" (Kafka's default) or "skip"


def apply_update(
    spec: GlobalStoreSpec,
    store: KeyValueStore,
    key: bytes | None,
    value: bytes | None,
    where: str,
    metrics: dict[str, int],
) -> None:
    """Apply one record of the global topic to its store: the latest value per key, ``None``
    deletes. A record without a key is skipped with a WARNING line and counted (as Kafka's
    global stores do); one that does not deserialize stops the app with a ``StreamsError``
    (Kafka's default LogAndFail handler) or, with ``on_error="skip"``, is logged and counted."""
    if key is None:
        metrics["skipped_records"] = metrics.get("skipped_records", 0) + 1
        log.warning("global table %s: skipped record %s without a key", spec.name, where)
        return
    try:
        spec.key_serde.deserialize(key)
        if value is not None:
            spec.value_serde.deserialize(value)
    except Exception as e:
        if spec.on_error != "skip":
            raise StreamsError(f"global table {spec.name}: record {where} does not deserialize: {e!r}") from e
        metrics["deserialization_errors"] = metrics.get("deserialization_errors", 0) + 1
        log.warning("global table %s: skipped record %s that does not deserialize: %r", spec.name, where, e)
        return
    store.engine.put(key, value)


class GlobalJoinNode(Node):
    """KStream-GlobalKTable join: ``joiner(value, global_value)`` for the global table's value of
    ``key_mapper(key, value)``; the result keeps the stream's key. Inner joins drop records with
    no match; left joins pass ``None``. A record whose value is ``None`` is skipped (logged); a
    ``None`` mapped key matches nothing (KIP-962: a left join still emits it)."""

    kind = "global_join"

    def __init__(
        self,
        name: str,
        store: str,
        key_mapper: Callable[[Any, Any], Any],
        joiner: Callable[[Any, Any], Any],
        left: bool,
    ) -> None:
        super().__init__(name)
        self.store = store
        self.key_mapper = key_mapper
        self.joiner = joiner
        self.left = left

    def global_stores(self) -> list[str]:
        return [self.store]

    def describe(self) -> str:
        return f"{self.kind} {self.name} (global store {self.store})"

    def process(self, task: Task, rec: Record) -> None:
        if rec.value is None:
            task.skip(rec, f"{self.name}: a record without a value cannot be joined", self)
            return
        gk = self.key_mapper(rec.key, rec.value)
        other = None if gk is None else task.global_store(self.store).get(gk)
        if other is None and not self.left:
            return
        self.forward(task, rec.with_kv(rec.key, self.joiner(rec.value, other)))
