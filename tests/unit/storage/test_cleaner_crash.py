"""Crash safety of the cleaner's swap: a crash at every step (writing the ``.cleaned``
files, the commit, each unlink/rename of the swap, the final fsyncs) leaves, after
recovery, the log exactly as it was before the clean or exactly as after it; and a
property test: random keyed appends + clean + reload equal a "latest value per key" model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cleaner_helpers import DAY, compact_config, kv, records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riverbed.storage import SegmentLog
from riverbed.storage import cleaner as cleaner_mod
from riverbed.storage import log as log_mod
from riverbed.storage import swap as swap_mod
from riverbed.storage.swap import CLEANED_SUFFIX, SWAP_SUFFIX

NOW = 10_000_000


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


def build(directory: Path) -> SegmentLog:
    log = SegmentLog.create(directory, "t", 0, compact_config(segment_bytes=250))
    for i in range(30):
        value = None if i % 7 == 3 else f"v{i}"
        log.append(kv(f"k{i % 4}", value), now_ms=1_000)
        if i == 12:
            log.append(kv("solo", "x"), now_ms=1_000)
    log.flush()
    return log


def reload(directory: Path, point: int | None) -> SegmentLog:
    return SegmentLog.load(directory, "t", 0, compact_config(segment_bytes=250), recovery_point=point)


def expected_states(tmp_path: Path) -> tuple[list[object], list[object]]:
    log = build(tmp_path / "ref-0")
    before = records(log)
    log.clean(NOW)
    after = records(log)
    log.close()
    assert before != after
    return before, after


def count_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    calls = [0]
    real_replace, real_remove = swap_mod._replace, swap_mod.remove_quietly

    def replace(a: Path, b: Path) -> None:
        calls[0] += 1
        real_replace(a, b)

    def remove(p: Path) -> None:
        calls[0] += 1
        real_remove(p)

    monkeypatch.setattr(swap_mod, "_replace", replace)
    monkeypatch.setattr(swap_mod, "remove_quietly", remove)
    log = build(tmp_path / "count-0")
    log.clean(NOW)
    log.close()
    monkeypatch.undo()
    return calls[0]


def install_crash(m: pytest.MonkeyPatch, where: str, n: int) -> list[bool]:
    """Make the next clean raise :class:`Crash` at the given point; the returned flag says
    whether the crash came after the manifest was durable."""
    counter = [0]
    committed = [False]
    if where == "write":
        real_fsync_dir = cleaner_mod.fsync_dir

        def crash_fsync_dir(path: Path, fsync: object) -> None:
            if counter[0] == n:
                raise Crash
            counter[0] += 1
            real_fsync_dir(path, fsync)  # type: ignore[arg-type]

        m.setattr(cleaner_mod, "fsync_dir", crash_fsync_dir)
    elif where == "commit":
        real_commit = log_mod.commit_swap

        def crash_commit(directory: Path, manifest: object, fsync: object) -> None:
            if n == 1:  # after the manifest is durable
                real_commit(directory, manifest, fsync)  # type: ignore[arg-type]
                committed[0] = True
            raise Crash

        m.setattr(log_mod, "commit_swap", crash_commit)
    elif where == "op":
        real_replace, real_remove = swap_mod._replace, swap_mod.remove_quietly

        def step() -> None:
            if counter[0] == n:
                raise Crash
            counter[0] += 1

        def replace(a: Path, b: Path) -> None:
            step()
            real_replace(a, b)

        def remove(p: Path) -> None:
            step()
            real_remove(p)

        m.setattr(swap_mod, "_replace", replace)
        m.setattr(swap_mod, "remove_quietly", remove)
    else:

        def crash_finish(*args: object) -> None:
            raise Crash

        m.setattr(log_mod, "finish_swap", crash_finish)
    return committed


def test_crash_at_every_step_of_the_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = expected_states(tmp_path)
    steps = count_steps(tmp_path, monkeypatch)
    assert steps > 5
    # points: ("write", n) crashes in the n-th fsync of the cleaned files (before the
    # commit); ("commit", 0) during the manifest write; ("op", n) before the n-th
    # unlink/rename of the swaps; ("finish", 0) before the manifest is removed
    points: list[tuple[str, int]] = [("write", n) for n in range(3)]
    points += [("commit", 0), ("commit", 1)]
    points += [("op", n) for n in range(steps)]
    points += [("finish", 0)]
    for k, (where, n) in enumerate(points):
        directory = tmp_path / f"c{k}-0"
        log = build(directory)
        point = log.recovery_point
        with monkeypatch.context() as m:
            committed = install_crash(m, where, n)
            crashed = False
            try:
                log.clean(NOW)
            except Crash:
                crashed = True
        log.close(clean=False)
        names = sorted(p.name for p in directory.iterdir())
        for recovery_point in (point, None):
            copy = tmp_path / f"copy{k}-{recovery_point is None}-0"
            shutil.copytree(directory, copy)
            again = reload(copy, recovery_point)
            try:
                got = records(again)
                leftovers = [p.name for p in copy.iterdir() if p.name.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))]
            finally:
                again.close()
            assert not leftovers, (where, n, names)
            if not crashed:
                assert got == after
            elif (where == "write" and n == 0) or (where == "commit" and not committed[0]):
                assert got == before, (where, n, names)  # the first group never committed
            else:
                # each group is swapped whole or not at all: what is left lies between
                assert set(after) <= set(got) <= set(before), (where, n, names)
                assert got == sorted(got)  # type: ignore[type-var]
                if where == "commit" or (where == "op" and n < 3):
                    assert got != before  # committed: the first group is cleaned
            # and the recovered log cleans to the same final state
            again = reload(copy, None)
            again.clean(NOW)
            assert records(again) == after
            again.close()


# -- the model ------------------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "d", "e"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, st.booleans()),  # (put, key, tombstone)
        st.just(("roll", "", False)),
    ),
    min_size=1,
    max_size=60,
)


def model_below(pairs: list[tuple[int, str, str | None]], end: int) -> list[tuple[int, str, str | None]]:
    last: dict[str, tuple[int, str, str | None]] = {}
    for rec in pairs:
        if rec[0] < end:
            last[rec[1]] = rec
    return sorted(last.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=ops, second=ops, crash=st.booleans(), starts=st.lists(st.integers(0, 130), max_size=4))
def test_clean_matches_latest_per_key_model(
    tmp_path_factory: pytest.TempPathFactory,
    first: list[tuple[str, str, bool]],
    second: list[tuple[str, str, bool]],
    crash: bool,
    starts: list[int],
) -> None:
    directory = tmp_path_factory.mktemp("model") / "t-0"
    config = compact_config(segment_bytes=260, delete_retention_ms=DAY)
    log = SegmentLog.create(directory, "t", 0, config)
    written: list[tuple[int, str, str | None]] = []

    def apply(batch: list[tuple[str, str, bool]]) -> None:
        for kind, key, tomb in batch:
            if kind == "roll":
                log.roll(now_ms=1_000)
                continue
            value = None if tomb else f"{key}{len(written)}"
            offset = log.append(kv(key, value), now_ms=1_000).base_offset
            written.append((offset, key, value))
        log.flush()

    def check(end: int, expired_below: int) -> None:
        got = records(log)
        below = model_below(written, end)
        # tombstones already given a horizon by an earlier clean are gone once it passed
        below = [r for r in below if not (r[2] is None and r[0] < expired_below)]
        assert [r for r in got if r[0] < end] == below
        assert [r for r in got if r[0] >= end] == [r for r in written if r[0] >= end]
        for start in starts:  # a consumer mid-way
            if start <= log.log_end_offset:
                assert records(log, start) == [r for r in got if r[0] >= start]

    apply(first)
    stats = log.clean(NOW)
    end1 = stats.end_offset if stats is not None else 0
    check(end1, 0)
    point = log.recovery_point
    log.close(clean=not crash)
    log = SegmentLog.load(directory, "t", 0, config, clean=not crash, recovery_point=point)
    check(end1, 0)
    apply(second)
    log.cleaner_state.first_dirty_offset = end1  # as the checkpoint would say
    stats = log.clean(NOW + DAY)
    end2 = stats.end_offset if stats is not None else end1
    check(max(end1, end2), end1)
    log.close()
