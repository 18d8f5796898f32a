"""Replacing segments with their cleaned copies so that a crash at any point leaves the log
as it was before the clean or as it is after it (see "The log cleaner" in
``docs/storage-format.md`` and ``docs/adr/0004-log-cleaner.md``).

The protocol, for a group of sealed segments ``b0 < b1 < ... < bk`` cleaned into one new
segment whose base offset is ``b0`` (or into nothing):

1. the new segment is written as ``<b0>.log.cleaned`` (and ``.index.cleaned``,
   ``.timeindex.cleaned``, ``.txnindex.cleaned`` when it has aborted transactions), every
   file fsynced, then the directory;
2. **commit point**: the manifest ``<b0>.swap`` is written atomically (``.tmp``, fsync,
   rename, directory fsync). It lists the replaced base offsets and which new files exist;
3. the replaced segments' files are unlinked (``b1..bk``) or replaced by rename
   (``<b0>.*.cleaned`` -> ``<b0>.*``, the ``.log`` last), the directory fsynced;
4. the manifest is removed (directory fsynced).

Recovery (:func:`finish_interrupted_swaps`, run before anything else looks at a partition
directory) redoes steps 3-4 for every manifest it finds (each step is idempotent), then
deletes every remaining ``*.cleaned`` file: without a manifest the clean never happened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    Fsync,
    atomic_write,
    fsync_dir,
    parse_segment_name,
    remove_quietly,
    segment_name,
)

logger = logging.getLogger(__name__)

CLEANED_SUFFIX: Final = ".cleaned"
SWAP_SUFFIX: Final = ".swap"
SEGMENT_SUFFIXES: Final = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)


_replace = os.replace  # (tests inject crashes here and in remove_quietly)


def cleaned_path(directory: Path, base_offset: int, suffix: str) -> Path:
    """``<base>.<suffix>.cleaned``: a file of a cleaned segment not swapped in yet."""
    return directory / (segment_name(base_offset, suffix) + CLEANED_SUFFIX)


def manifest_path(directory: Path, base_offset: int) -> Path:
    return directory / segment_name(base_offset, SWAP_SUFFIX)


@dataclass(frozen=True, slots=True)
class SwapManifest:
    replaces: tuple[int, ...]
    """Base offsets of the segments being replaced, ascending (at least one)."""
    new_base: int | None
    """Base offset of the new segment (``replaces[0]``), or None when the group cleaned
    down to nothing and simply goes."""
    has_txn_index: bool
    """The new segment has a ``.txnindex`` (else the old one of ``replaces[0]`` goes)."""

    def to_bytes(self) -> bytes:
        new = "-" if self.new_base is None else str(self.new_base)
        text = (
            "version: 0\n"
            f"new: {new}\n"
            f"replaces: {' '.join(str(b) for b in self.replaces)}\n"
            f"txnindex: {int(self.has_txn_index)}\n"
        )
        return text.encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> SwapManifest:
        fields: dict[str, str] = {}
        for line in data.decode("ascii").splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"malformed line {line!r}")
            fields[key.strip()] = value.strip()
        if fields.get("version") != "0":
            raise ValueError("unknown manifest version")
        replaces = tuple(int(b) for b in fields["replaces"].split())
        if not replaces or list(replaces) != sorted(set(replaces)):
            raise ValueError("bad replaced segment list")
        new = fields["new"]
        new_base = None if new == "-" else int(new)
        if new_base is not None and new_base != replaces[0]:
            raise ValueError("the new segment must take the first replaced base offset")
        return cls(replaces, new_base, fields["txnindex"] == "1")


def commit_swap(directory: Path, manifest: SwapManifest, fsync: Fsync) -> None:
    """Step 2: after this returns, the swap happens even if the process dies."""
    atomic_write(manifest_path(directory, manifest.replaces[0]), manifest.to_bytes(), fsync)


def apply_swap(directory: Path, manifest: SwapManifest) -> None:
    """Step 3 without its directory fsync: unlink or replace the old files. Idempotent."""
    first = manifest.replaces[0]
    for base in manifest.replaces:
        if base == manifest.new_base:
            continue
        for suffix in SEGMENT_SUFFIXES:
            remove_quietly(directory / segment_name(base, suffix))
    if manifest.new_base is None:
        return
    for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
        src = cleaned_path(directory, first, suffix)
        if src.exists():
            _replace(src, directory / segment_name(first, suffix))
    if not manifest.has_txn_index:
        remove_quietly(directory / segment_name(first, TXN_INDEX_SUFFIX))
    src = cleaned_path(directory, first, LOG_SUFFIX)
    if src.exists():  # last: until then the manifest still names work to do
        _replace(src, directory / segment_name(first, LOG_SUFFIX))


def finish_swap(directory: Path, manifest: SwapManifest, fsync: Fsync) -> None:
    """Steps 3's fsync and 4."""
    fsync_dir(directory, fsync)
    remove_quietly(manifest_path(directory, manifest.replaces[0]))
    fsync_dir(directory, fsync)


def discard_cleaned(directory: Path, base_offset: int) -> None:
    """Remove the ``.cleaned`` files of an abandoned clean (before its commit point)."""
    for suffix in SEGMENT_SUFFIXES:
        remove_quietly(cleaned_path(directory, base_offset, suffix))


def finish_interrupted_swaps(directory: Path, fsync: Fsync) -> bool:
    """At open: complete every committed swap, drop every uncommitted cleaned file.
    Returns True when the directory changed."""
    changed = False
    names = sorted(os.listdir(directory))
    for name in names:
        if parse_segment_name(name, SWAP_SUFFIX) is None:
            continue
        path = directory / name
        try:
            manifest = SwapManifest.from_bytes(path.read_bytes())
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
            # written atomically, so this is not a torn write: leave the old segments be
            logger.error("%s: ignoring an unreadable swap manifest: %s", path, exc)
            remove_quietly(path)
            changed = True
            continue
        logger.warning("%s: completing the swap of cleaned segment(s) %s", directory, manifest)
        apply_swap(directory, manifest)
        finish_swap(directory, manifest, fsync)
        changed = True
    for name in names:
        if name.endswith(CLEANED_SUFFIX) and (directory / name).exists():
            remove_quietly(directory / name)
            changed = True
    return changed
