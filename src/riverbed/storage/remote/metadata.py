"""Durable remote-log metadata of one partition: which segments are in the object store,
in which state, and the remote log start offset.

The file is ``remote-log-metadata.json`` in the partition directory (UTF-8 JSON), replaced
atomically (``.tmp``, fsync, rename, directory fsync) on every change::

    {"version": 1, "topic": "orders", "partition": 0,
     "partition_id": "<uuid hex>",          random, chosen when the file is first made
     "log_start_offset": 0,                  remote log start (-1 = nothing remote yet)
     "segments": [{"id": "<uuid hex>", "state": "COPY_FINISHED",
                   "base_offset": 0, "last_offset": 367, "max_timestamp": 1700000000052,
                   "offset_of_max_timestamp": 360, "size": 43424,
                   "files": {".log": 43424, ".index": 48, ".timeindex": 60, ".snapshot": 97},
                   "created_ms": 1700000001000}, ...]}

States follow Kafka's ``RemoteLogSegmentState``: an entry is written COPY_STARTED *before*
its first object is uploaded, COPY_FINISHED once every object is up and verified, and
DELETE_STARTED before its objects are deleted; it is dropped once they are gone. Only
COPY_FINISHED segments are read, or let local segments be deleted. A COPY_STARTED or
DELETE_STARTED entry found after a restart is finished off (its objects deleted, the entry
dropped) by the manager's background thread.

Object keys (see :func:`object_key`) hold the partition id and the segment id, so a retried
upload (which gets a new segment id) never overwrites a finished one, and a re-created
topic of the same name never shares objects with its predecessor.

Thread-safety: one lock per instance; every method takes it. Readers get immutable
snapshots (:meth:`RemoteLogMetadata.finished`).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Final

from ..files import atomic_write

__all__ = [
    "METADATA_FILE",
    "MetadataCorrupt",
    "RemoteLogMetadata",
    "RemoteSegment",
    "SegmentState",
    "object_key",
]

METADATA_FILE: Final = "remote-log-metadata.json"
VERSION: Final = 1
SNAPSHOT_SUFFIX: Final = ".snapshot"
"""Suffix of the producer-snapshot object uploaded with a segment."""


class MetadataCorrupt(ValueError):
    """The metadata file exists but cannot be read: refuse to guess what is remote."""


class SegmentState(Enum):
    COPY_STARTED = "COPY_STARTED"
    COPY_FINISHED = "COPY_FINISHED"
    DELETE_STARTED = "DELETE_STARTED"


@dataclass(frozen=True, slots=True)
class RemoteSegment:
    segment_id: str
    base_offset: int
    last_offset: int
    max_timestamp: int
    size: int
    """Bytes of the ``.log`` object."""
    state: SegmentState
    offset_of_max_timestamp: int = -1
    files: Mapping[str, int] = field(default_factory=dict)
    """Suffix -> object size, of every object of the segment (known before the upload)."""
    created_ms: int = 0

    def key(self, prefix: str, suffix: str) -> str:
        return object_key(prefix, self.base_offset, self.segment_id, suffix)

    def keys(self, prefix: str) -> list[str]:
        return [self.key(prefix, s) for s in self.files]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.segment_id,
            "state": self.state.value,
            "base_offset": self.base_offset,
            "last_offset": self.last_offset,
            "max_timestamp": self.max_timestamp,
            "offset_of_max_timestamp": self.offset_of_max_timestamp,
            "size": self.size,
            "files": dict(self.files),
            "created_ms": self.created_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RemoteSegment:
        files = {str(k): int(v) for k, v in dict(data["files"]).items()}
        segment = cls(
            segment_id=str(data["id"]),
            base_offset=int(data["base_offset"]),
            last_offset=int(data["last_offset"]),
            max_timestamp=int(data["max_timestamp"]),
            size=int(data["size"]),
            state=SegmentState(data["state"]),
            offset_of_max_timestamp=int(data.get("offset_of_max_timestamp", -1)),
            files=files,
            created_ms=int(data.get("created_ms", 0)),
        )
        if (
            not segment.segment_id.isalnum()
            or segment.base_offset < 0
            or segment.last_offset < segment.base_offset
            or segment.size < 0
        ):
            raise ValueError(f"implausible remote segment {data!r}")
        return segment


def partition_prefix(topic: str, partition: int, partition_id: str) -> str:
    """``<topic>-<partition>-<partition id>/``: every object of one partition incarnation."""
    return f"{topic}-{partition}-{partition_id}/"


def object_key(prefix: str, base_offset: int, segment_id: str, suffix: str) -> str:
    """``<prefix><base offset, 20 digits>-<segment id><suffix>``, e.g.
    ``orders-0-1f0c.../00000000000000000368-9a2e...log``."""
    return f"{prefix}{base_offset:020d}-{segment_id}{suffix}"


class RemoteLogMetadata:
    """The remote segments of one partition, persisted in ``directory``."""

    def __init__(
        self,
        directory: Path,
        topic: str,
        partition: int,
        *,
        partition_id: str | None = None,
        segments: list[RemoteSegment] | None = None,
        log_start_offset: int = -1,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self.directory = directory
        self.closed = False
        self.topic = topic
        self.partition = partition
        self.partition_id = partition_id or uuid.uuid4().hex
        self._segments: list[RemoteSegment] = list(segments or [])
        self._log_start = log_start_offset
        self._fsync = fsync
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.directory / METADATA_FILE

    @property
    def prefix(self) -> str:
        return partition_prefix(self.topic, self.partition, self.partition_id)

    # -- persistence -----------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        directory: Path,
        topic: str,
        partition: int,
        *,
        fsync: Callable[[int], None] = os.fsync,
    ) -> RemoteLogMetadata:
        """Read the file, or start empty (and write it) when there is none."""
        path = directory / METADATA_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            meta = cls(directory, topic, partition, fsync=fsync)
            meta.save()
            return meta
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            if data["topic"] != topic or int(data["partition"]) != partition:
                raise ValueError(f"belongs to {data['topic']}-{data['partition']}")
            segments = [RemoteSegment.from_json(s) for s in data["segments"]]
            return cls(
                directory,
                topic,
                partition,
                partition_id=str(data["partition_id"]),
                segments=segments,
                log_start_offset=int(data["log_start_offset"]),
                fsync=fsync,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MetadataCorrupt(f"{path}: {exc}") from exc

    def close(self) -> None:
        """The partition is being deleted: no more writes (a tiering pass still running on
        it must not write its file into a directory that is going away, or into a new one
        of the same name)."""
        self.closed = True

    def _save_locked(self) -> None:
        if self.closed:
            raise OSError(f"{self.path}: the partition was deleted")
        data = {
            "version": VERSION,
            "topic": self.topic,
            "partition": self.partition,
            "partition_id": self.partition_id,
            "log_start_offset": self._log_start,
            "segments": [s.to_json() for s in self._segments],
        }
        atomic_write(self.path, json.dumps(data, indent=1).encode("utf-8"), self._fsync)

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    # -- transitions (each one durable before it returns) -------------------------------

    def start_copy(self, segment: RemoteSegment) -> None:
        if segment.state is not SegmentState.COPY_STARTED:
            raise ValueError("a new remote segment starts as COPY_STARTED")
        with self._lock:
            if any(s.segment_id == segment.segment_id for s in self._segments):
                raise ValueError(f"duplicate segment id {segment.segment_id}")
            self._segments.append(segment)
            self._save_locked()

    def finish_copy(self, segment_id: str) -> RemoteSegment:
        return self._transition(segment_id, SegmentState.COPY_STARTED, SegmentState.COPY_FINISHED)

    def start_delete(self, segment_id: str) -> RemoteSegment:
        with self._lock:
            i = self._index_locked(segment_id)
            old = self._segments[i]
            if old.state is SegmentState.DELETE_STARTED:
                return old
            new = replace(old, state=SegmentState.DELETE_STARTED)
            self._segments[i] = new
            if old.state is SegmentState.COPY_FINISHED:
                self._recompute_start_locked()
            self._save_locked()
            return new

    def drop(self, segment_id: str) -> None:
        """Forget a COPY_STARTED or DELETE_STARTED entry whose objects are gone."""
        with self._lock:
            i = self._index_locked(segment_id)
            if self._segments[i].state is SegmentState.COPY_FINISHED:
                raise ValueError("mark a finished segment DELETE_STARTED before dropping it")
            del self._segments[i]
            self._save_locked()

    def _transition(
        self, segment_id: str, expected: SegmentState, new_state: SegmentState
    ) -> RemoteSegment:
        with self._lock:
            i = self._index_locked(segment_id)
            old = self._segments[i]
            if old.state is not expected:
                raise ValueError(f"segment {segment_id} is {old.state.value}, not {expected.value}")
            new = replace(old, state=new_state)
            self._segments[i] = new
            self._recompute_start_locked()
            self._save_locked()
            return new

    def _index_locked(self, segment_id: str) -> int:
        for i, s in enumerate(self._segments):
            if s.segment_id == segment_id:
                return i
        raise KeyError(segment_id)

    def _recompute_start_locked(self) -> None:
        finished = [s.base_offset for s in self._segments if s.state is SegmentState.COPY_FINISHED]
        self._log_start = max(self._log_start, min(finished)) if finished else -1

    def advance_log_start(self, offset: int) -> None:
        """DeleteRecords (or total retention) moved the partition's log start to ``offset``,
        possibly into the middle of a remote segment: reads below it are refused."""
        with self._lock:
            if offset > self._log_start and any(
                s.state is SegmentState.COPY_FINISHED for s in self._segments
            ):
                self._log_start = offset
                self._save_locked()

    # -- queries ---------------------------------------------------------------------------

    def segments(self) -> list[RemoteSegment]:
        """Every entry, in the order they were started."""
        with self._lock:
            return list(self._segments)

    def finished(self) -> list[RemoteSegment]:
        """COPY_FINISHED segments ordered by (base offset, last offset)."""
        with self._lock:
            done = [s for s in self._segments if s.state is SegmentState.COPY_FINISHED]
        return sorted(done, key=lambda s: (s.base_offset, s.last_offset))

    @property
    def log_start_offset(self) -> int:
        """The first offset the remote tier still serves (-1 when it holds nothing)."""
        with self._lock:
            return self._log_start

    def highest_copied_offset(self) -> int:
        """The last offset of the COPY_FINISHED segments (-1 if none). Segments are copied
        in offset order, so every offset from the remote log start up to it is remote."""
        return max((s.last_offset for s in self.finished()), default=-1)
