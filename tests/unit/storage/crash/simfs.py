"""A simulated file system that loses what was not synced (the approach of LazyFS / ALICE).

The code under test runs on a real directory (so every read sees what it wrote), while
:class:`SimFS` watches every call that changes files below that directory and keeps, per
file and per directory, what a power cut would preserve:

* a file's *durable content* is its content as of the last ``fsync`` of that file; the
  writes and truncations since then are *pending*, in order;
* a directory's *durable entries* are its entries as of the last ``fsync`` of that
  directory; creations, links, renames and unlinks since then are pending, in order.
  Creating or renaming a file is not durable until its directory is fsynced, whatever the
  file's own fsyncs (POSIX promises no more; ext4 and XFS may keep it, a test may not
  count on that).

:meth:`SimFS.capture` freezes that state at one moment (a *crash point*) and
:meth:`Image.materialize` writes one possible on-disk state after a crash at that point into
another directory, for a :class:`Choice`: for each file, how many of its pending operations
reached the disk (a prefix: 0 = all dropped) and whether the next write was torn (only a
prefix of its bytes landed) or landed as zeros (the size grew, the data did not: ext4
``data=writeback``); for each directory, how many of its pending entry operations reached
the disk. The code is then reopened on that directory and must recover.

Interception is at the test level: the storage layer funnels its changes through a few
``os`` functions (``open``, ``pwrite``, ``write``, ``ftruncate``, ``replace``, ``rename``,
``unlink``, ``link``, ``mkdir``, ``rmdir``) and the injectable ``fsync`` hook, and the
cluster metadata file is written with the built-in ``open``; :meth:`SimFS.install`
patches those for the duration of a test (calls outside the watched directory pass
through). Writes made through a file object (built-in ``open``) are not seen one by one:
such a file holds its last fsynced content after any crash. A change below the watched
directory that the model cannot account for (a directory entry it never saw created)
raises :class:`Untracked` at the next fsync of that directory, so a gap in the model fails
the test instead of passing silently.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import random
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# data operations: ("w", offset, bytes) or ("t", size)
DataOp = tuple[Any, ...]
# entry operations: ("link", name, vid), ("unlink", name), ("rename", src, dst, vid)
EntryOp = tuple[Any, ...]


class Untracked(AssertionError):
    """The watched directory changed in a way the simulation did not see."""


@dataclass
class Image:
    """The durable state and the pending operations at one crash point."""

    label: str
    root: int
    kinds: dict[int, str]
    durable_entries: dict[int, dict[str, int]]
    durable_content: dict[int, bytes]
    data_ops: dict[int, list[DataOp]]
    entry_ops: dict[int, list[EntryOp]]
    notes: list[Any]
    """What the test had noted (acknowledged) before this point, in order."""

    def __repr__(self) -> str:
        return f"Image({self.label!r}, {self.pending()} pending ops)"

    def pending(self) -> int:
        return sum(map(len, self.data_ops.values())) + sum(map(len, self.entry_ops.values()))

    def materialize(self, dest: Path, choice: Choice) -> None:
        """Write the on-disk state after the crash into ``dest`` (a new directory)."""
        dest.mkdir(parents=True)
        self._write_dir(self.root, dest, choice)

    def _entries(self, vid: int, choice: Choice) -> dict[str, int]:
        ops = self.entry_ops.get(vid, [])
        subset = choice.entries_subset(vid, len(ops))
        kept = range(choice.entries_kept(vid, len(ops))) if subset is None else subset
        return self._replay_entries(self.durable_entries.get(vid, {}), [ops[i] for i in kept])

    @staticmethod
    def _replay_entries(durable: dict[str, int], ops: list[EntryOp]) -> dict[str, int]:
        entries = dict(durable)
        for op in ops:
            if op[0] == "link":
                entries[op[1]] = op[2]
            elif op[0] == "unlink":
                entries.pop(op[1], None)
            else:  # rename: atomic, the source goes and the target is replaced
                entries.pop(op[1], None)
                entries[op[2]] = op[3]
        return entries

    def _write_dir(self, vid: int, path: Path, choice: Choice) -> None:
        for name, child in sorted(self._entries(vid, choice).items()):
            target = path / name
            if self.kinds[child] == "d":
                target.mkdir()
                self._write_dir(child, target, choice)
            else:
                with builtins.open(target, "wb") as f:
                    f.write(self.content(child, choice))

    def content(self, vid: int, choice: Choice) -> bytes:
        data = bytearray(self.durable_content.get(vid, b""))
        ops = self.data_ops.get(vid, [])
        kept, tear = choice.data_kept(vid, ops)
        for op in ops[:kept]:
            _apply(data, op)
        if tear is not None and kept < len(ops) and ops[kept][0] == "w":
            _, offset, payload = ops[kept]
            mode, cut = tear
            _apply(data, ("w", offset, payload[:cut] if mode == "prefix" else bytes(len(payload))))
        return bytes(data)


def _apply(data: bytearray, op: DataOp) -> None:
    if op[0] == "w":
        _, offset, payload = op
        if offset > len(data):
            data.extend(bytes(offset - len(data)))
        data[offset : offset + len(payload)] = payload
    else:
        size = op[1]
        if size < len(data):
            del data[size:]
        else:
            data.extend(bytes(size - len(data)))


class Choice:
    """Which pending operations of each file and directory reached the disk."""

    name = "choice"

    def entries_kept(self, vid: int, n: int) -> int:
        raise NotImplementedError

    def entries_subset(self, vid: int, n: int) -> list[int] | None:
        """Indexes of the directory's pending operations that reached the disk, when not a
        prefix (None: use :meth:`entries_kept`)."""
        return None

    def data_kept(self, vid: int, ops: list[DataOp]) -> tuple[int, tuple[str, int] | None]:
        """(number of ops kept, tear of the next one: ("prefix", bytes) or ("zeros", 0))."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Fixed(Choice):
    """Every file keeps ``files`` of its pending ops (True = all, False = none); every
    directory likewise with ``dirs``."""

    def __init__(self, name: str, *, files: bool, dirs: bool) -> None:
        self.name, self.files, self.dirs = name, files, dirs

    def entries_kept(self, vid: int, n: int) -> int:
        return n if self.dirs else 0

    def data_kept(self, vid: int, ops: list[DataOp]) -> tuple[int, tuple[str, int] | None]:
        return (len(ops) if self.files else 0), None


class Random(Choice):
    """A random prefix for each file and directory; the next write torn or zeroed half of
    the time. ``draw(n)`` returns an int in ``[0, n]`` (a ``random.Random`` or Hypothesis)."""

    def __init__(self, name: str, draw: Callable[[int], int]) -> None:
        self.name, self.draw = name, draw

    @classmethod
    def seeded(cls, seed: int) -> Random:
        rng = random.Random(seed)
        return cls(f"random({seed})", lambda n: rng.randint(0, n))

    def entries_kept(self, vid: int, n: int) -> int:
        return self.draw(n) if n else 0

    def data_kept(self, vid: int, ops: list[DataOp]) -> tuple[int, tuple[str, int] | None]:
        if not ops:
            return 0, None
        kept = self.draw(len(ops))
        if kept == len(ops) or ops[kept][0] != "w" or self.draw(1) == 0:
            return kept, None
        payload = ops[kept][2]
        if self.draw(3) == 0:
            return kept, ("zeros", 0)
        return kept, ("prefix", self.draw(max(len(payload) - 1, 0)))


class Reordered(Random):
    """Like :class:`Random`, but each pending directory operation reaches the disk or not
    independently of the others (strict POSIX: without an fsync of the directory, nothing
    orders its changes; ext4 and XFS happen to journal them in order)."""

    @classmethod
    def seeded(cls, seed: int) -> Reordered:
        rng = random.Random(seed)
        return cls(f"reordered({seed})", lambda n: rng.randint(0, n))

    def entries_subset(self, vid: int, n: int) -> list[int] | None:
        return [i for i in range(n) if self.draw(1)]


class DropOne(Choice):
    """Every pending operation reached the disk except one directory operation: the shape
    of a missing directory fsync between two changes of the same directory (a later
    change persisted, an earlier one did not)."""

    def __init__(self, vid: int, index: int) -> None:
        self.name, self.vid, self.index = f"all but entry op {index} of dir {vid}", vid, index

    def entries_kept(self, vid: int, n: int) -> int:
        return n

    def entries_subset(self, vid: int, n: int) -> list[int] | None:
        return [i for i in range(n) if vid != self.vid or i != self.index]

    def data_kept(self, vid: int, ops: list[DataOp]) -> tuple[int, tuple[str, int] | None]:
        return len(ops), None


def choices_for(image: Image, seeds: int = 2) -> list[Choice]:
    """The choices to try at one crash point: :func:`standard_choices` and every
    :class:`DropOne`; only one when nothing is pending (every choice gives the same state)."""
    if not image.pending():
        return [Fixed("nothing pending", files=False, dirs=False)]
    drops: list[Choice] = [DropOne(vid, i) for vid, ops in sorted(image.entry_ops.items()) if len(ops) > 1 for i in range(len(ops) - 1)]
    return standard_choices(seeds) + drops


def standard_choices(seeds: int = 6) -> list[Choice]:
    """The fixed corner cases, then ``seeds`` random ones."""
    fixed: list[Choice] = [
        Fixed("all pending dropped", files=False, dirs=False),
        Fixed("all pending kept", files=True, dirs=True),
        Fixed("data kept, entries dropped", files=True, dirs=False),
        Fixed("entries kept, data dropped", files=False, dirs=True),
    ]
    return fixed + [Random.seeded(s) for s in range(seeds)] + [Reordered.seeded(s) for s in range(seeds)]


@dataclass
class SimFS:
    """Watches ``root`` (see the module docstring). Use :meth:`install` as a context
    manager and pass :meth:`fsync` as the code's fsync hook."""

    root: Path
    capture_every_op: bool = False
    """Take an :class:`Image` after every watched operation (ALICE: crash at every point)."""
    images: list[Image] = field(default_factory=list, repr=False)
    notes: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(os.path.realpath(self.root))
        self._prefix = str(self.root) + os.sep
        self._lock = threading.RLock()
        self._next_vid = 0
        self._vid_of: dict[int, int] = {}  # st_ino -> vid of the live file
        self._opaque: set[int] = set()  # files written through file objects (writes unseen)
        self.kinds: dict[int, str] = {}
        self.durable_entries: dict[int, dict[str, int]] = {}
        self.durable_content: dict[int, bytes] = {}
        self.data_ops: dict[int, list[DataOp]] = {}
        self.entry_ops: dict[int, list[EntryOp]] = {}
        self.ops = 0
        self._real: dict[str, Any] = {}
        self._dev = os.stat(self.root).st_dev
        self.root_vid = self._adopt_tree(self.root)

    # -- the model -------------------------------------------------------------------------

    def _new_vid(self, ino: int, kind: str) -> int:
        vid = self._next_vid
        self._next_vid += 1
        self._vid_of[ino] = vid
        self.kinds[vid] = kind
        if kind == "d":
            self.durable_entries[vid] = {}
            self.entry_ops[vid] = []
        else:
            self.durable_content[vid] = b""
            self.data_ops[vid] = []
        return vid

    def _adopt_tree(self, path: Path) -> int:
        """What exists when watching starts counts as durable."""
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            vid = self._new_vid(st.st_ino, "d")
            self.durable_entries[vid] = {e: self._adopt_tree(path / e) for e in os.listdir(path)}
        else:
            vid = self._new_vid(st.st_ino, "f")
            self.durable_content[vid] = path.read_bytes()
        return vid

    def _watched(self, path: Any, dir_fd: int | None = None) -> str | None:
        if isinstance(path, int):
            return None
        p = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(p):
            p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
        p = os.path.abspath(p)
        if p == str(self.root) or p.startswith(self._prefix):
            return p
        return None

    def _vid(self, path: str) -> int:
        ino = os.lstat(path).st_ino
        try:
            return self._vid_of[ino]
        except KeyError:
            raise Untracked(f"{path}: created behind the simulation's back") from None

    def _parent(self, path: str) -> tuple[int, str]:
        head, name = os.path.split(path)
        return self._vid(head), name

    def _fd_vid(self, fd: int) -> int | None:
        st = os.fstat(fd)
        if st.st_dev != self._dev:
            return None
        return self._vid_of.get(st.st_ino)

    def _record_data(self, fd: int, op: DataOp) -> None:
        vid = self._fd_vid(fd)
        if vid is not None and self.kinds[vid] == "f":
            self.data_ops[vid].append(op)
            self._tick("data")

    def _tick(self, label: str) -> None:
        self.ops += 1
        if self.capture_every_op:
            self.images.append(self.capture(f"op {self.ops} ({label})"))

    def note(self, item: Any) -> None:
        """Record that the test saw ``item`` acknowledged (kept with later images)."""
        with self._lock:
            self.notes.append(item)

    def capture(self, label: str = "now") -> Image:
        with self._lock:
            return Image(
                label,
                self.root_vid,
                dict(self.kinds),
                {k: dict(v) for k, v in self.durable_entries.items()},
                dict(self.durable_content),
                {k: list(v) for k, v in self.data_ops.items()},
                {k: list(v) for k, v in self.entry_ops.items()},
                list(self.notes),
            )

    # -- the intercepted calls -------------------------------------------------------------

    def fsync(self, fd: int) -> None:
        """The fsync hook: makes the file's content (or the directory's entries) durable.
        The real fsync is skipped (nothing real is at stake)."""
        with self._lock:
            vid = self._fd_vid(fd)
            if vid is None:
                self._real.get("fsync", os.fsync)(fd)  # not ours
                return
            if self.kinds[vid] == "d":
                entries = {}
                for name in os.listdir(fd):
                    ino = os.lstat(name, dir_fd=fd).st_ino
                    if ino not in self._vid_of:
                        raise Untracked(f"{name}: created behind the simulation's back")
                    entries[name] = self._vid_of[ino]
                # self-check: the model saw every change of this directory
                expected = Image._replay_entries(self.durable_entries[vid], self.entry_ops[vid])
                if expected != entries:
                    raise Untracked(f"directory entries changed unseen: model {expected}, disk {entries}")
                self.durable_entries[vid] = entries
                self.entry_ops[vid] = []
            else:
                # the fd may be write-only: read through a fresh one
                rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
                try:
                    size = os.fstat(rfd).st_size
                    content = os.pread(rfd, size, 0) if size else b""
                finally:
                    os.close(rfd)
                # self-check: the model saw every write (except through file objects)
                if vid not in self._opaque:
                    model = bytearray(self.durable_content[vid])
                    for op in self.data_ops[vid]:
                        _apply(model, op)
                    if model != content:
                        raise Untracked(f"file content changed unseen ({len(model)} vs {len(content)} bytes)")
                self.durable_content[vid] = content
                self.data_ops[vid] = []
            self._tick("fsync")

    def _open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        real = self._real["open"]
        p = self._watched(path, dir_fd)
        if p is None:
            return int(real(path, flags, mode, dir_fd=dir_fd))
        with self._lock:
            existed = os.path.lexists(p)
            fd = int(real(path, flags, mode, dir_fd=dir_fd))
            self._opened(p, fd, existed, bool(flags & os.O_TRUNC))
            return fd

    def _opened(self, p: str, fd: int, existed: bool, truncated: bool) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return
        if not existed:
            vid = self._new_vid(st.st_ino, "f")
            parent, name = self._parent(p)
            self.entry_ops[parent].append(("link", name, vid))
            self._tick("create")
        elif truncated:
            self._record_data(fd, ("t", 0))

    def _builtin_open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        real = self._real["builtins.open"]
        p = self._watched(file)
        if p is None or not any(c in mode for c in "wax+"):
            return real(file, mode, *args, **kwargs)
        with self._lock:
            existed = os.path.lexists(p)
            f = real(file, mode, *args, **kwargs)
            self._opened(p, f.fileno(), existed, "w" in mode)
            vid = self._fd_vid(f.fileno())
            if vid is not None:
                self._opaque.add(vid)
            return f

    def _pwrite(self, fd: int, data: Any, offset: int) -> int:
        with self._lock:
            n = int(self._real["pwrite"](fd, data, offset))
            self._record_data(fd, ("w", offset, bytes(memoryview(data)[:n])))
            return n

    def _write(self, fd: int, data: Any) -> int:
        with self._lock:
            try:
                position = os.lseek(fd, 0, os.SEEK_CUR)
            except OSError:  # a pipe, a terminal: not a file of ours
                return int(self._real["write"](fd, data))
            n = int(self._real["write"](fd, data))
            self._record_data(fd, ("w", position, bytes(memoryview(data)[:n])))
            return n

    def _ftruncate(self, fd: int, length: int) -> None:
        with self._lock:
            self._real["ftruncate"](fd, length)
            self._record_data(fd, ("t", length))

    def _rename(self, which: str) -> Callable[..., None]:
        def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
            real = self._real[which]
            s, d = self._watched(src, src_dir_fd), self._watched(dst, dst_dir_fd)
            if s is None and d is None:
                return real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)  # type: ignore[no-any-return]
            if s is None or d is None:
                raise Untracked(f"rename across the watched boundary: {src} -> {dst}")
            with self._lock:
                vid = self._vid(s)
                replaced = os.lstat(d) if os.path.lexists(d) else None
                real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
                if replaced is not None and replaced.st_nlink <= 1 and self._vid_of.get(replaced.st_ino) != vid:
                    self._vid_of.pop(replaced.st_ino, None)
                sp, sn = self._parent(s)
                dp, dn = self._parent(d)
                if sp == dp:
                    self.entry_ops[sp].append(("rename", sn, dn, vid))
                else:
                    self.entry_ops[sp].append(("unlink", sn))
                    self.entry_ops[dp].append(("link", dn, vid))
                self._tick(which)
            return None

        return rename

    def _unlinker(self, which: str) -> Callable[..., None]:
        def unlink(path: Any, *, dir_fd: int | None = None) -> None:
            real = self._real[which]
            p = self._watched(path, dir_fd)
            if p is None:
                return real(path, dir_fd=dir_fd)  # type: ignore[no-any-return]
            with self._lock:
                parent, name = self._parent(p)
                st = os.lstat(p)
                real(path, dir_fd=dir_fd)
                if stat.S_ISDIR(st.st_mode) or st.st_nlink <= 1:
                    self._vid_of.pop(st.st_ino, None)  # the inode number may be reused
                self.entry_ops[parent].append(("unlink", name))
                self._tick(which)
            return None

        return unlink

    def _link(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real = self._real["link"]
        s, d = self._watched(src), self._watched(dst)
        if s is None and d is None:
            return real(src, dst, *args, **kwargs)  # type: ignore[no-any-return]
        if s is None or d is None or args or kwargs:
            raise Untracked(f"link the simulation does not model: {src} -> {dst}")
        with self._lock:
            vid = self._vid(s)
            real(src, dst)
            parent, name = self._parent(d)
            self.entry_ops[parent].append(("link", name, vid))
            self._tick("link")
        return None

    def _mkdir(self, path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real = self._real["mkdir"]
        p = self._watched(path, dir_fd)
        if p is None:
            return real(path, mode, dir_fd=dir_fd)  # type: ignore[no-any-return]
        with self._lock:
            real(path, mode, dir_fd=dir_fd)
            vid = self._new_vid(os.lstat(p).st_ino, "d")
            parent, name = self._parent(p)
            self.entry_ops[parent].append(("link", name, vid))
            self._tick("mkdir")
        return None

    @contextlib.contextmanager
    def install(self) -> Iterator[SimFS]:
        """Patch ``os`` and the built-in ``open`` while the block runs. ``os.fsync`` is
        patched too (for code that calls it directly), but a default argument
        ``fsync=os.fsync`` was bound at import: pass :meth:`fsync` to such code."""
        self._real = {
            "open": os.open,
            "builtins.open": builtins.open,
            "pwrite": os.pwrite,
            "write": os.write,
            "ftruncate": os.ftruncate,
            "replace": os.replace,
            "rename": os.rename,
            "unlink": os.unlink,
            "remove": os.remove,
            "rmdir": os.rmdir,
            "link": os.link,
            "mkdir": os.mkdir,
            "fsync": os.fsync,
        }
        patched: dict[str, Any] = {
            "open": self._open,
            "pwrite": self._pwrite,
            "write": self._write,
            "ftruncate": self._ftruncate,
            "replace": self._rename("replace"),
            "rename": self._rename("rename"),
            "unlink": self._unlinker("unlink"),
            "remove": self._unlinker("remove"),
            "rmdir": self._unlinker("rmdir"),
            "link": self._link,
            "mkdir": self._mkdir,
            "fsync": self.fsync,
        }
        try:
            for name, fn in patched.items():
                setattr(os, name, fn)
            builtins.open = self._builtin_open
            yield self
        finally:
            for name in patched:
                setattr(os, name, self._real[name])
            builtins.open = self._real["builtins.open"]


def crash_images(images: list[Image], choices: list[Choice], workdir: Path) -> Iterator[tuple[Image, Choice, Path]]:
    """Materialize every (image, choice) pair under ``workdir``; yields each directory."""
    n = 0
    for image in images:
        for choice in choices:
            n += 1
            dest = workdir / f"crash-{n}"
            image.materialize(dest, choice)
            yield image, choice, dest
