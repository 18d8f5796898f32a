"""Foreign-key table-table joins (Kafka's ``KTable#join(KTable, Function<V, KO>, ValueJoiner)``).

The left table (key ``K``, value ``V``) and the right table (key ``KO``) need not be
co-partitioned: the join runs in two sub-topologies linked by two internal topics, as in Kafka
Streams.

- **Left side** (the left table's task): on each change of a left row the extractor gives the
  old and the new foreign key. A *subscription* goes to ``<app>-<name>-subscription-registration-topic``,
  keyed (so partitioned) by the foreign key: "unsubscribe" for the old key when it changed,
  "subscribe" for the new one, carrying a hash of the new left value, the left key and the left
  row's partition.
- **Right side** (the right table's task): a subscription is recorded in the store
  ``<name>-subscription-store`` (key: foreign key + left key; changelogged, so it is restored
  like any store) and answered with the right table's current value for the foreign key; an
  update of a right row answers every subscription of its key. Answers go to
  ``<app>-<name>-subscription-response-topic``, to the left row's partition.
- **Back on the left side** an answer is dropped when its hash is not that of the left row's
  current value (the row changed since: a stale answer), else the result is
  ``joiner(left, right)``, keyed by the left key; an inner join emits ``None`` (a tombstone)
  when the right side has no value, so a foreign-key change or a right deletion retracts the
  earlier result.

A left row whose foreign key is ``None`` matches nothing: a left join emits
``joiner(left, None)`` at once, an inner join a tombstone (if the row had a value before).
Deleting a left row emits a tombstone. Output timestamps are those of the record that
triggered the result (the left change or the right update).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .nodes import Node, SinkNode
from .records import Record
from .serdes import BYTES, Serde

if TYPE_CHECKING:
    from .task import Task

# subscription instructions (Kafka's SubscriptionWrapper.Instruction)
DELETE_KEY_NO_PROPAGATE = 0
PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE = 1
PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE = 2

_VERSION = 0
_HEAD = struct.Struct(">BBiB")  # version, instruction, left partition, hash length
_LEN = struct.Struct(">I")


def value_hash(raw: bytes | None) -> bytes | None:
    """The hash of a serialized left value that subscriptions and answers carry."""
    return None if raw is None else hashlib.blake2b(raw, digest_size=16).digest()


def encode_subscription(
    instruction: int, partition: int, h: bytes | None, left_key: bytes
) -> bytes:
    hb = h or b""
    return _HEAD.pack(_VERSION, instruction, partition, len(hb)) + hb + left_key


def decode_subscription(data: bytes) -> tuple[int, int, bytes | None, bytes]:
    """-> (instruction, left partition, hash, left key)."""
    version, instruction, partition, n = _HEAD.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"unknown subscription version {version}")
    at = _HEAD.size
    return instruction, partition, (data[at : at + n] if n else None), data[at + n :]


def encode_response(h: bytes | None, right: bytes | None) -> bytes:
    hb = h or b""
    return bytes([_VERSION, len(hb)]) + hb + (b"\x00" if right is None else b"\x01" + right)


def decode_response(data: bytes) -> tuple[bytes | None, bytes | None]:
    """-> (hash, right value)."""
    if data[0] != _VERSION:
        raise ValueError(f"unknown subscription response version {data[0]}")
    n = data[1]
    h = data[2 : 2 + n] if n else None
    rest = data[2 + n :]
    return h, (rest[1:] if rest[:1] == b"\x01" else None)


def combined_prefix(fk: bytes) -> bytes:
    return _LEN.pack(len(fk)) + fk


def _prefix_end(prefix: bytes) -> bytes | None:
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None


class FkSubscribeNode(Node):
    """Left side: turns each left-table change into subscription records (keyed by foreign key)."""

    kind = "fk_join_subscribe"

    def __init__(
        self,
        name: str,
        extractor: Callable[[Any], Any],
        left_key_serde: Serde[Any],
        left_value_serde: Serde[Any],
        fk_serde: Serde[Any],
        joiner: Callable[[Any, Any], Any],
        left_join: bool,
    ) -> None:
        super().__init__(name)
        self.extractor = extractor
        self.left_key_serde = left_key_serde
        self.left_value_serde = left_value_serde
        self.fk_serde = fk_serde
        self.joiner = joiner
        self.left_join = left_join
        self.sink: SinkNode | None = None  # the subscription topic
        self.result: Node | None = None  # where results computed here go (no foreign key, deletes)

    def successors(self) -> list[Node]:
        return [n for n in (self.sink, self.result) if n is not None]

    def _fk(self, value: Any) -> bytes | None:
        if value is None:
            return None
        fk = self.extractor(value)
        return None if fk is None else self.fk_serde.serialize(fk)

    def _send(
        self, task: Task, rec: Record, fk: bytes, instruction: int, h: bytes | None, left_key: bytes
    ) -> None:
        assert self.sink is not None
        self.sink.process(
            task, rec.with_kv(fk, encode_subscription(instruction, task.partition, h, left_key))
        )

    def _emit(self, task: Task, rec: Record, value: Any) -> None:
        assert self.result is not None
        self.result.process(task, rec.with_kv(rec.key, value))

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None:
            return  # (the table source already skipped it)
        left_key = self.left_key_serde.serialize(rec.key)
        assert left_key is not None
        new, old = rec.value, rec.old
        old_fk, new_fk = self._fk(old), self._fk(new)
        if old_fk is not None and old_fk != new_fk:
            self._send(task, rec, old_fk, DELETE_KEY_NO_PROPAGATE, None, left_key)
        if new is None:
            if old is not None:
                self._emit(task, rec, None)  # the row is gone: so is its result
            return
        if new_fk is None:  # matches nothing
            if self.left_join:
                self._emit(task, rec, self.joiner(new, None))
            elif old is not None:
                self._emit(task, rec, None)
            return
        fk_changed = old_fk is not None and old_fk != new_fk
        instruction = (
            PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE
            if self.left_join or fk_changed
            else PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE
        )
        self._send(
            task,
            rec,
            new_fk,
            instruction,
            value_hash(self.left_value_serde.serialize(new)),
            left_key,
        )


class FkResponseSinkNode(SinkNode):
    """Right side: writes an answer to the left row's partition of the response topic."""

    kind = "fk_join_response_sink"

    def __init__(self, name: str, topic: str) -> None:
        super().__init__(name, topic, BYTES, BYTES, internal=True)

    def process(self, task: Task, rec: Record) -> None:
        partition, value = rec.value
        task.send_to(self.topic, rec.key, value, rec.timestamp, None, partition)


class FkSubscriptionNode(Node):
    """Right side: records (or removes) a subscription and answers it with the right value."""

    kind = "fk_join_subscription"

    def __init__(self, name: str, subscription_store: str, right_store: str) -> None:
        super().__init__(name)
        self.subscription_store = subscription_store
        self.right_store = right_store

    def stores(self) -> list[str]:
        return [self.subscription_store, self.right_store]

    def process(self, task: Task, rec: Record) -> None:
        fk: bytes = rec.key
        if fk is None or rec.value is None:
            task.skip(rec, f"{self.name}: a subscription needs a foreign key and a value", self)
            return
        instruction, partition, h, left_key = decode_subscription(rec.value)
        subs = task.kv_store(self.subscription_store)
        ckey = combined_prefix(fk) + left_key
        if instruction == DELETE_KEY_NO_PROPAGATE:
            subs.put(ckey, None)
            return
        subs.put(ckey, rec.value)
        right = task.engines[self.right_store].get(fk)
        if right is None and instruction == PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE:
            return
        self.forward(task, rec.with_kv(left_key, (partition, encode_response(h, right))))


class FkRightUpdateNode(Node):
    """Right side: an update of a right row answers every subscription of its key."""

    kind = "fk_join_right_update"

    def __init__(
        self,
        name: str,
        subscription_store: str,
        right_key_serde: Serde[Any],
        right_value_serde: Serde[Any],
    ) -> None:
        super().__init__(name)
        self.subscription_store = subscription_store
        self.right_key_serde = right_key_serde
        self.right_value_serde = right_value_serde

    def stores(self) -> list[str]:
        return [self.subscription_store]

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or (rec.value is None and rec.old is None):
            return
        fk = self.right_key_serde.serialize(rec.key)
        assert fk is not None
        right = None if rec.value is None else self.right_value_serde.serialize(rec.value)
        prefix = combined_prefix(fk)
        engine = task.engines[self.subscription_store]
        for ckey, sub in list(engine.range(prefix, _prefix_end(prefix))):
            _instruction, partition, h, _left_key = decode_subscription(sub)
            left_key = ckey[len(prefix) :]
            self.forward(task, rec.with_kv(left_key, (partition, encode_response(h, right))))


class FkResponseNode(Node):
    """Left side: joins an answer with the left row's current value, unless it is stale."""

    kind = "fk_join_response"

    def __init__(
        self,
        name: str,
        left_store: str,
        left_key_serde: Serde[Any],
        right_value_serde: Serde[Any],
        joiner: Callable[[Any, Any], Any],
        left_join: bool,
    ) -> None:
        super().__init__(name)
        self.left_store = left_store
        self.left_key_serde = left_key_serde
        self.right_value_serde = right_value_serde
        self.joiner = joiner
        self.left_join = left_join

    def stores(self) -> list[str]:
        return [self.left_store]

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or rec.value is None:
            task.skip(rec, f"{self.name}: a subscription response needs a key and a value", self)
            return
        h, right_raw = decode_response(rec.value)
        current = task.engines[self.left_store].get(rec.key)
        if value_hash(current) != h:
            task.metrics["fk_join_stale_responses"] = (
                task.metrics.get("fk_join_stale_responses", 0) + 1
            )
            return  # the left row changed since the subscription: a newer answer follows
        key = self.left_key_serde.deserialize(rec.key)
        left = task.kv_store(self.left_store).get(key)
        right = self.right_value_serde.deserialize(right_raw)
        if left is None or (right is None and not self.left_join):
            out = None
        else:
            out = self.joiner(left, right)
        self.forward(
            task, Record(key, out, rec.timestamp, None, rec.topic, rec.partition, rec.offset)
        )
