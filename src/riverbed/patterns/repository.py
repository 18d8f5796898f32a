"""Loading aggregates: snapshot (if any) + the later events, replayed and upcast; time travel.

Any process may load (reading is free); only the partition's owner appends (see owner.py).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Generic

from .aggregate import A, TypeRegistry
from .envelope import Envelope
from .errors import NoUpcastPath
from .snapshots import Snapshot, SnapshotStore
from .store import EventStore, PartitionReader

log = logging.getLogger("riverbed.patterns.repository")


def snapshot_type(aggregate_type: str) -> str:
    """The name under which snapshot upcasters of an aggregate type are registered."""
    return f"{aggregate_type}@snapshot"


def from_snapshot(cls: type[A], snap: Snapshot, types: TypeRegistry) -> A | None:
    """The aggregate a snapshot holds, its state upcast to the current shape; None (with a log
    line) when the snapshot is corrupt or of a shape no upcaster path leads from."""
    where = f"snapshot of {snap.aggregate_type} {snap.aggregate_id} at version {snap.version}"
    try:
        state = json.loads(snap.state)
        if not isinstance(state, dict):
            raise ValueError("state is not a JSON object")
    except ValueError as exc:
        log.warning("%s is corrupt (%s); ignoring it and replaying every event", where, exc)
        return None
    if snap.schema_version != cls.snapshot_version:
        try:
            state = types.upcasters.upcast(snapshot_type(snap.aggregate_type), snap.schema_version, state, cls.snapshot_version)
        except NoUpcastPath as exc:
            log.warning("%s has shape v%d (%s); discarding it and replaying every event", where, snap.schema_version, exc)
            return None
    try:
        return cls.from_state(snap.aggregate_id, snap.version, state)
    except (TypeError, ValueError) as exc:
        log.warning("%s does not fit %s (%s); ignoring it and replaying every event", where, cls.__name__, exc)
        return None


def apply_envelope(agg: A, env: Envelope, types: TypeRegistry) -> None:
    """Applies one stored event (upcast) to ``agg``; its version must be the next one."""
    if env.aggregate_version != agg.version + 1:
        raise ValueError(f"{env.aggregate_type} {env.aggregate_id}: event at version {env.aggregate_version} after version {agg.version} (offset {env.offset})")
    agg.apply(types.to_event(env))
    agg.version = env.aggregate_version


class Repository(Generic[A]):
    """Loads aggregates of one type by replay (from a snapshot when there is a usable one)."""

    def __init__(self, store: EventStore, cls: type[A], types: TypeRegistry, snapshots: SnapshotStore | None = None) -> None:
        self.store, self.cls, self.types, self.snapshots = store, cls, types, snapshots
        self.reader = PartitionReader(store)
        self.last_replayed = 0  # events replayed by the last load (for tests and benchmarks)

    def load(self, aggregate_id: str, *, as_of_version: int | None = None, as_of_time: datetime | None = None, use_snapshot: bool = True) -> A:
        """The aggregate now, or as of a version (the state after that many events) or as of a
        time (after every event stamped at or before it). A never-seen id gives version 0."""
        agg: A | None = None
        start = 0
        if use_snapshot and self.snapshots is not None:
            snap = self.snapshots.get(self.cls.aggregate_type, aggregate_id)
            if snap is not None and (as_of_version is None or snap.version <= as_of_version) and (as_of_time is None or snap.event_time <= as_of_time):
                agg = from_snapshot(self.cls, snap, self.types)
                if agg is not None:
                    start = snap.offset + 1
        if agg is None:
            agg = self.cls.create(aggregate_id)
        self.last_replayed = 0
        for env in self.reader.read_aggregate(aggregate_id, start):
            if env.aggregate_version <= agg.version:
                continue  # covered by the snapshot
            if as_of_version is not None and env.aggregate_version > as_of_version:
                break
            if as_of_time is not None and env.time > as_of_time:
                break
            apply_envelope(agg, env, self.types)
            self.last_replayed += 1
        return agg

    def history(self, aggregate_id: str) -> list[Envelope]:
        """Every stored event of the aggregate, upcast, oldest first."""
        return [self.types.upcast(env) for env in self.reader.read_aggregate(aggregate_id)]

    def close(self) -> None:
        self.reader.close()
