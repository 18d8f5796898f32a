"""Crash consistency of the cleaner's swap (``storage/swap.py``) on a file system that loses
what was not fsynced: a crash after any file-system operation of a clean, whatever subset
of the unsynced writes and directory changes reached the disk, recovers a log in which each
group of segments is either as it was before the clean or as it is after it (so the records
lie between the two states, in order), with indexes that find every record, and which a
new clean brings to the final state. (``test_cleaner_crash.py`` crashes at the same steps
but keeps the page cache.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cleaner_helpers import compact_config, kv, records
from crash_helpers import no_fsync
from simfs import SimFS, choices_for

from riverbed.protocol.records.batch import iter_batches
from riverbed.storage import SegmentLog
from riverbed.storage import swap as swap_mod

NOW = 10_000_000
CONFIG = compact_config(segment_bytes=600, index_interval_bytes=60)


def build(directory: Path, fsync: object) -> SegmentLog:
    log = SegmentLog.create(directory, "t", 0, CONFIG, fsync=fsync)  # type: ignore[arg-type]
    for i in range(16):
        value = None if i % 7 == 3 else f"v{i}"
        log.append(kv(f"k{i % 4}", value, ts=1_000 + i), now_ms=1_000)
        if i == 6:
            log.append(kv("solo", "x", ts=1_000 + i), now_ms=1_000)
        if i % 2:
            log.roll()  # small segments: the cleaner groups several into one
    log.flush()
    return log


def check_lookups(log: SegmentLog, state: list[tuple[int, str | None, str | None]], label: str) -> None:
    """Every surviving record is found through the offset index (a fetch from its offset)
    and the time index."""
    for offset, _key, _value in state:
        data = bytes(log.read(offset, 1).records)
        first = next(iter(iter_batches(data)))
        assert first.base_offset <= offset <= first.last_offset, f"{label}: offset index, {offset}"
    found = log.offset_for_timestamp(0)
    assert found is not None and found[0] <= state[0][0], f"{label}: time index"


@pytest.mark.parametrize("trusted", [False, True], ids=["recovered", "trusted-indexes"])
def test_a_crash_during_a_clean_leaves_the_log_before_or_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool) -> None:
    root = tmp_path / "live"
    root.mkdir()
    sim = SimFS(root)
    # the swap calls os.replace through an alias taken at import: route it through os
    monkeypatch.setattr(swap_mod, "_replace", lambda a, b: os.replace(a, b))
    with sim.install():
        log = build(root / "t-0", sim.fsync)
        before = records(log)
        end = log.log_end_offset
        sim.capture_every_op = True
        assert log.clean(NOW) is not None
        sim.capture_every_op = False
        after = records(log)
        log.close()
    assert before != after
    assert len(sim.images) > 20
    n = 0
    for image in sim.images:
        for choice in choices_for(image):
            n += 1
            dest = tmp_path / f"crash-{n}"
            image.materialize(dest, choice)
            label = f"crash at {image.label}, {choice}"
            # trusted: as if the recovery checkpoint vouched for every segment (their
            # index files are then adopted after sanity checks instead of rebuilt)
            loaded = SegmentLog.load(dest / "t-0", "t", 0, CONFIG, recovery_point=end if trusted else None, fsync=no_fsync)
            try:
                state = records(loaded)
                assert set(after) <= set(state) <= set(before), label
                assert state == sorted(state), label
                assert loaded.log_end_offset == end, label
                check_lookups(loaded, state, label)
                if image is sim.images[-1] or n % 7 == 0:
                    loaded.clean(NOW)
                    assert records(loaded) == after, label
            finally:
                loaded.close()
