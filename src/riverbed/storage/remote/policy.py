"""The decisions of tiered storage as pure functions: what to copy, which local segments
may go, which remote segments total retention deletes. No I/O, no clock: the remote log
manager feeds them and carries them out."""

from __future__ import annotations

from collections.abc import Sequence

from ..api import LogConfig
from .api import SealedSegment, TieringConfig
from .metadata import RemoteSegment

__all__ = ["copy_candidates", "local_delete_below", "local_only_bytes", "remote_deletions"]


def copy_candidates(
    sealed: Sequence[SealedSegment], highest_copied: int, log_start_offset: int
) -> list[SealedSegment]:
    """The sealed segments holding offsets not yet remote, oldest first: every segment whose
    last offset is beyond ``highest_copied`` and not wholly below the log start. A segment
    straddling ``highest_copied`` (the cleaner merged a copied segment with an uncopied
    one) is copied whole: the remote copies then overlap, which readers allow."""
    return [
        s for s in sealed if s.last_offset > highest_copied and s.last_offset >= log_start_offset
    ]


def local_delete_below(
    sealed: Sequence[SealedSegment],
    local_size: int,
    highest_copied: int,
    tiering: TieringConfig,
    config: LogConfig,
    now_ms: int,
) -> int:
    """The offset below which local segments may be deleted (-1: none may). Only a prefix
    of segments that are wholly remote (last offset <= ``highest_copied``) qualifies, and
    only while local retention says so: older than local.retention.ms, or in excess of
    local.retention.bytes (``local_size`` counts every local segment, the active one
    included). Applies whatever the cleanup policy: a compacted topic keeps its recent
    segments locally and the rest remote."""
    retention_ms = tiering.effective_local_retention_ms(config)
    retention_bytes = tiering.effective_local_retention_bytes(config)
    n = 0
    excess = local_size - retention_bytes if retention_bytes >= 0 else -1
    for segment in sealed:
        if segment.last_offset > highest_copied:
            break
        expired = retention_ms >= 0 and now_ms - segment.max_timestamp > retention_ms
        oversize = retention_bytes >= 0 and excess - segment.size >= 0
        if not (expired or oversize):
            break
        excess -= segment.size
        n += 1
    return sealed[n - 1].last_offset + 1 if n else -1


def local_only_bytes(sealed: Sequence[SealedSegment], local_size: int, highest_copied: int) -> int:
    """Local bytes not yet remote (the active segment included)."""
    return local_size - sum(s.size for s in sealed if s.last_offset <= highest_copied)


def remote_deletions(
    finished: Sequence[RemoteSegment],
    log_start_offset: int,
    local_only: int,
    config: LogConfig,
    now_ms: int,
) -> list[RemoteSegment]:
    """The oldest remote segments total retention deletes, as a prefix of ``finished``
    (ordered by offset): those wholly below the log start (DeleteRecords), and, when
    cleanup.policy contains ``delete``, those older than retention.ms or in excess of
    retention.bytes, where the size is the remote bytes plus the local bytes that are not
    remote yet (``local_only``)."""
    ordered = sorted(finished, key=lambda s: (s.base_offset, s.last_offset))
    total = sum(s.size for s in ordered) + local_only
    doomed: list[RemoteSegment] = []
    for segment in ordered:
        below_start = segment.last_offset < log_start_offset
        expired = oversize = False
        if config.cleanup_delete:
            expired = (
                config.retention_ms >= 0 and now_ms - segment.max_timestamp > config.retention_ms
            )
            oversize = (
                config.retention_bytes >= 0 and total - segment.size >= config.retention_bytes
            )
        if not (below_start or expired or oversize):
            break
        total -= segment.size
        doomed.append(segment)
    return doomed
