"""Tiered storage (Kafka's KIP-405): sealed segments copied to an object store, recorded in
durable remote-log metadata, read back for fetches below the local log start, deleted by
total retention. See ``docs/adr/0005-tiered-storage.md``.

Modules: :mod:`.store` (object stores), :mod:`.metadata` (the per-partition metadata
file), :mod:`.policy` (pure decisions), :mod:`.copier` (the background manager),
:mod:`.reader` (remote reads), :mod:`.api` (the hooks a log offers).
"""

from .api import SealedSegment, StagedSegment, TieredLog, TieringConfig
from .copier import PartitionStatus, RemoteLogManager, RemoteLogManagerConfig
from .metadata import MetadataCorrupt, RemoteLogMetadata, RemoteSegment, SegmentState
from .reader import RangeCache, RemoteLogReader, RemoteSegmentCorrupt
from .store import LocalDirStore, ObjectNotFound, ObjectStore, ObjectStoreError, S3Store

__all__ = [
    "LocalDirStore",
    "MetadataCorrupt",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "PartitionStatus",
    "RangeCache",
    "RemoteLogManager",
    "RemoteLogManagerConfig",
    "RemoteLogMetadata",
    "RemoteLogReader",
    "RemoteSegment",
    "RemoteSegmentCorrupt",
    "S3Store",
    "SealedSegment",
    "SegmentState",
    "StagedSegment",
    "TieredLog",
    "TieringConfig",
]
