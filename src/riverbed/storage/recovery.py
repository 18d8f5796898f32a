"""Opening a partition directory: which segments to trust, which to validate batch by
batch, where to truncate, what the log start offset is. See "Recovery" in
``docs/storage-format.md``."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .files import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TMP_SUFFIX,
    TXN_INDEX_SUFFIX,
    Fsync,
    fsync_dir,
    parse_segment_name,
    read_partition_metadata,
    remove_quietly,
    segment_name,
    write_partition_metadata,
)
from .remote.metadata import METADATA_FILE
from .segment import Segment
from .swap import CLEANED_SUFFIX, SWAP_SUFFIX, finish_interrupted_swaps

REMOTE_STAGING = ".remote-staging"
REMOTE_METADATA_FILE = METADATA_FILE

logger = logging.getLogger(__name__)


def recover_partition(
    directory: Path,
    topic: str,
    partition: int,
    interval: int,
    *,
    clean: bool,
    recovery_point: int | None,
    fsync: Fsync,
    recovery_position: int | None = None,
    now_ms: int,
    remote_coverage: tuple[int, int] | Callable[[], tuple[int, int] | None] | None = None,
    sync_later: Callable[[Segment], None] | None = None,
) -> tuple[list[Segment], int]:
    """Open the segments of ``directory`` and return them with the log start offset.

    After a clean shutdown every segment's indexes are trusted (after sanity checks).
    Otherwise every segment at or above ``recovery_point`` (None: all of them) and the last
    one are validated batch by batch; the first torn or corrupt batch truncates the log
    there and later segments are deleted. Indexes that fail their sanity checks are
    rebuilt. Leftover temporary files and orphan index files are removed.

    ``remote_coverage``: [start, end) of the offsets held by the partition's remote
    segments (tiered storage). When they reach the first local segment, the log start
    stays below it (the partition's log start, persisted in ``partition.metadata``). A
    callable is called only when the directory holds the remote-log metadata file.

    ``recovery_position``: how many bytes of the segment at ``recovery_point`` were on disk
    when the checkpoint was written; validation of that segment starts there.

    ``sync_later``: the validated segments' ``.log`` files are handed to it instead of being
    fsynced here (the log manager makes them durable with one syncfs(2) for every partition,
    before the broker serves anything)."""
    names = os.listdir(directory)
    changed = False
    changed_names = False  # (an interrupted swap rewrote segments: trust no position)
    if any(name.endswith((SWAP_SUFFIX, CLEANED_SUFFIX)) for name in names):
        changed_names = True
        # a clean interrupted by a crash: finish its swap or forget it (storage/swap.py)
        changed = finish_interrupted_swaps(directory, fsync)
        names = os.listdir(directory)
    if REMOTE_STAGING in names:
        # hard links staged for an upload that a crash interrupted (storage/remote/copier.py):
        # they would keep the data of deleted segments on disk for ever
        shutil.rmtree(directory / REMOTE_STAGING, ignore_errors=True)
    bases = sorted(b for n in names if (b := parse_segment_name(n, LOG_SUFFIX)) is not None)
    known = set(bases)
    for name in names:
        orphan = any(
            (b := parse_segment_name(name, suffix)) is not None and b not in known
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)
        )
        if orphan or name.endswith((TMP_SUFFIX, DELETED_SUFFIX)):
            remove_quietly(directory / name)
            changed = True
    if callable(remote_coverage):
        remote_coverage = remote_coverage() if REMOTE_METADATA_FILE in names else None
    meta = read_partition_metadata(directory)
    meta_start = 0
    if meta is not None and meta.get("log_start_offset", "").isdigit():
        meta_start = int(meta["log_start_offset"])
    segments: list[Segment] = []
    recovered: list[Segment] = []
    for i, base in enumerate(bases):
        segment = Segment.open_existing(directory, base, interval)
        if segment_name(base, TXN_INDEX_SUFFIX) not in names:
            segment.no_txn_index()  # (what reading a missing file gives, without trying)
        is_last = i == len(bases) - 1
        must_recover = not clean and (is_last or recovery_point is None or base >= recovery_point)
        if not must_recover and not segment.load_trusted():
            logger.warning("%s: rebuilding the indexes of segment %d", directory, base)
            must_recover = True
        truncated = False
        if must_recover:
            durable = recovery_position if base == recovery_point and not changed_names else None
            truncated = segment.recover(durable or 0)
            recovered.append(segment)
            if truncated:
                logger.warning(
                    "%s: truncated segment %d at byte %d (torn or corrupt batch)",
                    directory,
                    base,
                    segment.size,
                )
        if segments and segment.base_offset < segments[-1].next_offset:
            logger.warning("%s: segment %d overlaps its predecessor", directory, base)
            truncated = True  # drop it and everything after it
            segment.delete()
        elif segment.size == 0 and not is_last and not truncated and segments:
            # (an empty first segment is kept: the cleaner leaves one to hold the log start)
            segment.delete()
        else:
            segments.append(segment)
        if truncated:
            for later in bases[i + 1 :]:
                for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                    remove_quietly(directory / segment_name(later, suffix))
            changed = True
            break
    if not segments:
        segments.append(Segment.create(directory, meta_start, interval, now_ms))
        changed = True
    local_base = segments[0].base_offset
    if remote_coverage == (-1, -1) and meta is not None and meta_start < local_base:
        log_start = meta_start  # the remote metadata is unreadable: keep the log start as it was
    elif remote_coverage is not None and remote_coverage[0] < local_base <= remote_coverage[1]:
        log_start = max(meta_start, remote_coverage[0])
    else:
        log_start = max(meta_start, local_base)
    if log_start > segments[-1].next_offset:
        # The metadata is ahead of the data (an unflushed tail was lost): start afresh.
        for segment in segments:
            segment.delete()
        segments = [Segment.create(directory, log_start, interval, now_ms)]
        changed = True
    while len(segments) > 1 and segments[1].base_offset <= log_start:
        segments.pop(0).delete()
        changed = True
    active = segments[-1]
    for segment in recovered:
        if segment.closed:
            continue
        if sync_later is not None:
            sync_later(segment)
        else:
            fsync(segment.fd)
        segment.synced_size = segment.size
        if segment is not active:
            segment.write_indexes(fsync)
            changed = True
    if meta is None or meta_start != log_start:
        write_partition_metadata(directory, topic, partition, log_start, fsync)
    elif changed:
        fsync_dir(directory, fsync)
    # (the active segment's index files are read at its first lookup or append:
    # Segment.ensure_indexes, from find_position and _note_batch)
    adopt_as_active(active, now_ms)
    return segments, log_start


def adopt_as_active(segment: Segment, now_ms: int) -> None:
    """A segment (re)becoming the active one after a load or a truncation needs the time of
    its first append for segment.ms: the first batch's timestamp when plausible, else now."""
    if segment.size == 0:
        segment.first_append_ms = -1
    elif segment.first_append_ms < 0:
        ts = segment.first_batch_timestamp()
        segment.first_append_ms = ts if 0 <= ts <= now_ms else now_ms
