"""Two power cuts in a row, with Hypothesis choosing the crash points and what reached the
disk: a log is written and crashes; the state after the crash is recovered *on the
simulated file system* (so recovery's own truncations, deletions and rewrites must be
durable before the log acknowledges anything new), more batches are appended and
acknowledged, and it crashes again. Every batch acknowledged in either life must be there."""

from __future__ import annotations

import shutil
from pathlib import Path
from tempfile import TemporaryDirectory

from crash_helpers import Appended, History, check_recovered_log, idempotent_batch, open_recovered
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simfs import Choice, Fixed, Image, Random, Reordered, SimFS

from riverbed.storage import LogConfig
from riverbed.storage.log import SegmentLog

CONFIG = LogConfig(segment_bytes=700, index_interval_bytes=120, segment_ms=10**12, retention_ms=-1)


def live(sim: SimFS, root: Path, history: History, batches: list[int], first_seq: int) -> None:
    """Open (recovering what is there), append ``batches`` (record counts), acknowledging
    each once its high watermark is published; then the crash (no clean close). A bare
    SegmentLog, flushed by hand: no flusher thread, so every run makes the same file-system
    operations and Hypothesis can replay an example."""
    directory = root / "data" / "t-0"
    if directory.exists():
        log = SegmentLog.load(directory, "t", 0, CONFIG, fsync=sim.fsync)
    else:
        log = SegmentLog.create(directory, "t", 0, CONFIG, fsync=sim.fsync)
    seq = first_seq
    try:
        for i, count in enumerate(batches):
            ts = 1_000_000 + 10 * len(history.batches)
            batch = idempotent_batch(seq, count, ts)
            pristine = bytes(batch)
            info = log.append(batch, now_ms=ts)
            seq += count
            history.batches.append(Appended(bytes(batch), pristine, info.base_offset, info.last_offset, seq - 1, ts + count - 1))
            if i % 3 == 2:
                log.roll()
            log.flush()
            assert log.high_watermark == info.last_offset + 1
            sim.note(log.high_watermark)
    finally:
        log.close(clean=False)


def choice_from(data: st.DataObject, label: str) -> Choice:
    kind = data.draw(st.sampled_from(["dropped", "kept", "random", "reordered"]), label=f"{label} kind")
    if kind == "dropped":
        return Fixed("all pending dropped", files=False, dirs=False)
    if kind == "kept":
        return Fixed("all pending kept", files=True, dirs=True)
    seed = data.draw(st.integers(0, 1 << 32), label=f"{label} seed")
    return (Random if kind == "random" else Reordered).seeded(seed)


def pick(data: st.DataObject, images: list[Image], label: str) -> Image:
    return images[data.draw(st.integers(0, len(images) - 1), label=f"{label} crash point")]


def recovered_count(dest: Path, history: History, acked: int, label: str) -> int:
    manager, log = open_recovered(dest, CONFIG)
    try:
        return check_recovered_log(log, history, acked, label)
    finally:
        manager.close()


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    first=st.lists(st.integers(1, 4), min_size=1, max_size=8),
    second=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    data=st.data(),
)
def test_every_acknowledged_batch_survives_two_crashes(first: list[int], second: list[int], data: st.DataObject) -> None:
    with TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "life1"
        (root / "data").mkdir(parents=True)  # (the broker makes it durably; not the log)
        sim = SimFS(root, capture_every_op=True)
        history = History()
        with sim.install():
            live(sim, root, history, first, 0)
        image = pick(data, sim.images, "first")
        choice = choice_from(data, "first")
        acked = max(image.notes, default=0)
        # the state after the first crash, checked on one copy and lived on in another
        # (one materialization: a random choice draws afresh each time)
        image.materialize(tmp_path / "life2", choice)
        shutil.copytree(tmp_path / "life2", tmp_path / "check1")
        n = recovered_count(tmp_path / "check1", history, acked, f"first crash at {image.label}, {choice}")
        survived = History(history.batches[:n])
        sim2 = SimFS(tmp_path / "life2", capture_every_op=True)
        with sim2.install():
            live(sim2, tmp_path / "life2", survived, second, survived.batches[-1].last_sequence + 1 if n else 0)
        image2 = pick(data, sim2.images, "second")
        choice2 = choice_from(data, "second")
        # acknowledged in the first life and recovered, or acknowledged in the second
        acked2 = max([max(image2.notes, default=0), acked])
        image2.materialize(tmp_path / "check2", choice2)
        recovered_count(tmp_path / "check2", survived, acked2, f"second crash at {image2.label}, {choice2}")

