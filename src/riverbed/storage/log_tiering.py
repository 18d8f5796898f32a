"""A SegmentLog's side of tiered storage (see docs/adr/0005-tiered-storage.md).

:class:`TieringMixin` implements what the remote log manager needs from a local log
(:class:`riverbed.storage.remote.api.TieredLog`): which sealed segments may be copied, a
consistent copy of one segment's files, and the deletion of local segments once they are
safely remote. :func:`remote_coverage` tells recovery, when a log is opened, which offsets
the remote segments already hold.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX, fsync_dir
from .log_state import LogState, logger
from .remote.api import SealedSegment, StagedSegment
from .remote.metadata import METADATA_FILE, MetadataCorrupt, RemoteLogMetadata
from .remote.reader import RemoteLogReader
from .segment import Segment


class TieringMixin(LogState):
    """Tiered storage hooks of a SegmentLog (remote.api.TieredLog)."""

    def attach_remote(self, metadata: RemoteLogMetadata, reader: RemoteLogReader) -> None:
        """Serve offsets below the local log start from the object store, and leave the
        deletion of sealed segments to the remote log manager."""
        self._remote = (metadata, reader)

    def detach_remote(self) -> None:
        self._remote = None

    @property
    def remote_metadata(self) -> RemoteLogMetadata | None:
        remote = self._remote
        return None if remote is None else remote[0]

    def _sealed_locked(self) -> list[Segment]:
        """The prefix of sealed segments that may be tiered: finalized, non-empty, wholly
        below the high watermark and (compacted logs) below the cleaner's first dirty
        offset. Never the active segment."""
        limit = self._hw
        if self._config.cleanup_compact:
            limit = min(limit, self.cleaner_state.first_dirty_offset)
        out: list[Segment] = []
        for segment in self._segments[:-1]:
            if segment in self._unfinalized or segment.next_offset > limit:
                break
            if segment.size:
                out.append(segment)
        return out

    def sealed_segments(self) -> list[SealedSegment]:
        with self._lock:
            if self._closed:
                return []
            return [_describe(s) for s in self._sealed_locked()]

    def stage_segment(self, base_offset: int, staging_dir: Path) -> StagedSegment | None:
        with self._flush_lock:  # no deletion, truncation or cleaner swap meanwhile
            with self._lock:
                if self._closed:
                    return None
                found = [s for s in self._sealed_locked() if s.base_offset == base_offset]
                if not found:
                    return None
                segment = found[0]
                described = _describe(segment)
                snapshot = self._last_snapshot
            files: dict[str, Path] = {}
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                source = segment.path(suffix)
                target = staging_dir / source.name
                try:
                    os.link(source, target)
                except FileNotFoundError:
                    if suffix == TXN_INDEX_SUFFIX:
                        continue
                    raise
                files[suffix] = target
        data = snapshot[1] if snapshot is not None and snapshot[0] >= segment.next_offset else None
        return StagedSegment(described, files, data)

    def drop_local_below(self, offset: int) -> int:
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return 0
                remote = self._remote
                if remote is not None:  # never a segment that is not safely remote
                    offset = min(offset, remote[0].highest_copied_offset() + 1)
                segments = self._segments
                n = 0
                while (
                    n < len(segments) - 1
                    and segments[n].next_offset <= offset
                    and segments[n].next_offset <= self._hw
                    and segments[n] not in self._unfinalized
                ):
                    n += 1
                doomed = self._drop_prefix_locked(n)
            for segment in doomed:
                segment.delete()
                # oldest first, each deletion durable before the next: a crash must never
                # keep an older segment while a newer one is gone (reads would skip the hole
                # instead of going to the object store)
                fsync_dir(self._dir, self._fsync)
        return len(doomed)


def _describe(segment: Segment) -> SealedSegment:
    return SealedSegment(
        base_offset=segment.base_offset,
        last_offset=segment.next_offset - 1,
        max_timestamp=segment.largest_timestamp,
        size=segment.size,
        offset_of_max_timestamp=segment.offset_of_max_timestamp,
    )


#: the remote-log metadata exists but cannot be read
UNKNOWN_COVERAGE = (-1, -1)


def remote_coverage(directory: Path, topic: str, partition: int) -> tuple[int, int] | None:
    """[start, end) of the offsets the partition's COPY_FINISHED remote segments cover
    without a gap, from its remote-log metadata file (read only); None without one."""
    if not (directory / METADATA_FILE).exists():
        return None
    try:
        finished = RemoteLogMetadata.load(directory, topic, partition).finished()
    except (MetadataCorrupt, OSError) as exc:
        # not None: that would let recovery raise the persisted log start above the remote
        # data for good; UNKNOWN_COVERAGE keeps it until the file is repaired
        logger.error("%s: unreadable remote-log metadata (tiered offsets unreadable until it is repaired): %s", directory, exc)
        return UNKNOWN_COVERAGE
    if not finished:
        return None
    start = end = finished[0].base_offset
    for segment in finished:
        if segment.base_offset > end:
            break
        end = max(end, segment.last_offset + 1)
    return start, end
