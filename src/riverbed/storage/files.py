"""Small files around the segments: names, atomic writes, the partition metadata file, the
broker-level recovery-point checkpoint. Layouts are in ``docs/storage-format.md``."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

Fsync = Callable[[int], None]

LOG_SUFFIX: Final = ".log"
INDEX_SUFFIX: Final = ".index"
TIME_INDEX_SUFFIX: Final = ".timeindex"
TXN_INDEX_SUFFIX: Final = ".txnindex"
TMP_SUFFIX: Final = ".tmp"
DELETED_SUFFIX: Final = ".deleted"
PARTITION_METADATA: Final = "partition.metadata"
RECOVERY_CHECKPOINT: Final = "recovery-point-offset-checkpoint"
CLEAN_SHUTDOWN: Final = ".clean-shutdown"
CLEANER_CHECKPOINT: Final = "cleaner-offset-checkpoint"
RECOVERY_POSITIONS: Final = "recovery-point-positions"
"""Written with the recovery checkpoint: how many bytes of each partition's recovery-point
segment were on disk then (after a crash, validation of that segment starts there)."""
OPEN_TXNS_CHECKPOINT: Final = "open-transactions-checkpoint"
"""Written by a clean shutdown: the partitions holding an open transaction (with the first
offset of the oldest one). The next start loads them at once; the others lazily."""

_TOPIC_RE: Final = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_PARTITION_DIR_RE: Final = re.compile(r"^([a-zA-Z0-9._-]{1,249})-(\d{1,9})$")


def segment_name(base_offset: int, suffix: str) -> str:
    """``00000000000000000042.log``: the base offset, zero-padded to 20 digits."""
    return f"{base_offset:020d}{suffix}"


def parse_segment_name(name: str, suffix: str) -> int | None:
    if not name.endswith(suffix):
        return None
    stem = name[: -len(suffix)]
    if len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


def is_legal_topic(topic: str) -> bool:
    return bool(_TOPIC_RE.match(topic)) and topic not in (".", "..")


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    m = _PARTITION_DIR_RE.match(name)
    if m is None or m.group(1) in (".", ".."):
        return None
    return m.group(1), int(m.group(2))


def fsync_dir(path: Path, fsync: Fsync) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path, fsync: Fsync) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durably(path: Path, fsync: Fsync) -> None:
    """``mkdir -p path``, then fsync the parent of every directory it created (a new
    directory's entry is durable only once its parent is fsynced; Kafka flushes the parent
    of a log directory it creates too)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent, fsync)


def write_fully(fd: int, data: bytes | bytearray | memoryview, position: int) -> None:
    """pwrite that tolerates short writes (one syscall in the normal case)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, position)
        if n <= 0:  # pragma: no cover - the kernel reports errors by raising
            raise OSError("pwrite wrote nothing")
        view = view[n:]
        position += n


def write_file(path: Path, data: bytes, fsync: Fsync | None) -> None:
    """Replace ``path`` in place (not atomic; for rebuildable files such as indexes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_fully(fd, data, 0)
        if fsync is not None:
            fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, fsync: Fsync) -> None:
    """Write to ``<name>.tmp``, fsync, rename over ``path``, fsync the directory: a crash
    leaves either the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    write_file(tmp, data, fsync)
    os.replace(tmp, path)
    fsync_dir(path.parent, fsync)


def write_partition_metadata(
    directory: Path, topic: str, partition: int, log_start_offset: int, fsync: Fsync | None
) -> None:
    """Atomically, unless ``fsync`` is None: then written in place without fsync (a new
    directory's first file; a torn one reads as missing)."""
    text = (
        "version: 0\n"
        f"topic: {topic}\n"
        f"partition: {partition}\n"
        f"log_start_offset: {log_start_offset}\n"
    )
    if fsync is None:
        write_file(directory / PARTITION_METADATA, text.encode("ascii"), None)
    else:
        atomic_write(directory / PARTITION_METADATA, text.encode("ascii"), fsync)


def read_partition_metadata(directory: Path) -> dict[str, str] | None:
    """The key/value pairs of ``partition.metadata``; None when missing or unreadable."""
    try:
        text = (directory / PARTITION_METADATA).read_text("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            return None
        fields[key.strip()] = value.strip()
    if fields.get("version") != "0":
        return None
    return fields


def write_recovery_checkpoint(
    data_dir: Path, entries: Iterable[tuple[str, int, int]], fsync: Fsync
) -> None:
    write_offset_checkpoint(data_dir / RECOVERY_CHECKPOINT, entries, fsync)


def read_recovery_checkpoint(data_dir: Path) -> Mapping[tuple[str, int], int]:
    """{(topic, partition): recovery point}; empty when missing or malformed (which only
    makes recovery do more work, never less)."""
    return read_offset_checkpoint(data_dir / RECOVERY_CHECKPOINT)


def write_offset_checkpoint(
    path: Path, entries: Iterable[tuple[str, int, int]], fsync: Fsync
) -> None:
    """Kafka's checkpoint layout: version, count, then ``topic partition offset`` lines;
    written atomically."""
    rows = sorted(entries)
    lines = ["0", str(len(rows))]
    lines.extend(f"{topic} {partition} {offset}" for topic, partition, offset in rows)
    atomic_write(path, ("\n".join(lines) + "\n").encode("ascii"), fsync)


def read_offset_checkpoint(path: Path) -> Mapping[tuple[str, int], int]:
    """{(topic, partition): offset}; empty when missing or malformed."""
    try:
        lines = path.read_text("ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        if lines[0] != "0" or int(lines[1]) != len(lines) - 2:
            return {}
        points: dict[tuple[str, int], int] = {}
        for line in lines[2:]:
            topic, partition, offset = line.split(" ")
            points[(topic, int(partition))] = int(offset)
        return points
    except (IndexError, ValueError):
        return {}


def write_recovery_positions(
    data_dir: Path, entries: Iterable[tuple[str, int, int, int]], fsync: Fsync
) -> None:
    """``recovery-point-positions``: version, count, then ``topic partition base position``
    lines (bytes of the segment at ``base`` that were on disk); written atomically."""
    rows = sorted(entries)
    lines = ["0", str(len(rows))]
    lines.extend(f"{t} {p} {base} {pos}" for t, p, base, pos in rows)
    atomic_write(data_dir / RECOVERY_POSITIONS, ("\n".join(lines) + "\n").encode("ascii"), fsync)


def read_recovery_positions(data_dir: Path) -> Mapping[tuple[str, int], tuple[int, int]]:
    """{(topic, partition): (segment base offset, position)}; empty when missing or
    malformed."""
    try:
        lines = (data_dir / RECOVERY_POSITIONS).read_text("ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        if lines[0] != "0" or int(lines[1]) != len(lines) - 2:
            return {}
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for line in lines[2:]:
            topic, partition, base, position = line.split(" ")
            out[(topic, int(partition))] = (int(base), int(position))
        return out
    except (IndexError, ValueError):
        return {}


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
