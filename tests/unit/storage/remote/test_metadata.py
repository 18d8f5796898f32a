"""The remote-log metadata file: transitions are durable, reload is exact, garbage is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riverbed.storage.remote import MetadataCorrupt, RemoteLogMetadata, RemoteSegment, SegmentState
from riverbed.storage.remote.metadata import METADATA_FILE, object_key


def _segment(sid: str, base: int, last: int) -> RemoteSegment:
    return RemoteSegment(
        segment_id=sid,
        base_offset=base,
        last_offset=last,
        max_timestamp=1000 + last,
        size=100,
        state=SegmentState.COPY_STARTED,
        files={".log": 100, ".index": 8},
    )


def test_transitions_are_persisted(tmp_path: Path) -> None:
    meta = RemoteLogMetadata.load(tmp_path, "orders", 3)
    assert (tmp_path / METADATA_FILE).exists()
    assert meta.log_start_offset == -1 and meta.highest_copied_offset() == -1
    meta.start_copy(_segment("aa", 0, 9))
    assert meta.finished() == []
    meta.finish_copy("aa")
    meta.start_copy(_segment("bb", 10, 19))
    meta.finish_copy("bb")
    meta.start_copy(_segment("cc", 20, 29))  # left COPY_STARTED, as after a crash
    again = RemoteLogMetadata.load(tmp_path, "orders", 3)
    assert again.partition_id == meta.partition_id
    assert again.segments() == meta.segments()
    assert [s.segment_id for s in again.finished()] == ["aa", "bb"]
    assert again.highest_copied_offset() == 19
    assert again.log_start_offset == 0
    assert again.segments()[2].state is SegmentState.COPY_STARTED

    again.advance_log_start(5)
    assert again.log_start_offset == 5
    again.start_delete("aa")
    assert again.log_start_offset == 10
    again.drop("aa")
    with pytest.raises(ValueError):
        again.drop("bb")  # finished: must be DELETE_STARTED first
    with pytest.raises(ValueError):
        again.finish_copy("bb")
    with pytest.raises(ValueError):
        again.start_copy(_segment("bb", 30, 39))  # duplicate id
    third = RemoteLogMetadata.load(tmp_path, "orders", 3)
    assert [s.segment_id for s in third.segments()] == ["bb", "cc"]
    assert third.log_start_offset == 10


def test_keys_hold_partition_and_segment_ids(tmp_path: Path) -> None:
    meta = RemoteLogMetadata.load(tmp_path, "orders", 3)
    seg = _segment("abc", 368, 400)
    key = seg.key(meta.prefix, ".log")
    assert key == f"orders-3-{meta.partition_id}/00000000000000000368-abc.log"
    assert key == object_key(meta.prefix, 368, "abc", ".log")
    assert sorted(seg.keys(meta.prefix)) == sorted(
        [key, f"orders-3-{meta.partition_id}/00000000000000000368-abc.index"]
    )


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": 99}',
        json.dumps({"version": 1, "topic": "other", "partition": 3}).encode(),
        json.dumps(
            {
                "version": 1,
                "topic": "orders",
                "partition": 3,
                "partition_id": "x",
                "log_start_offset": 0,
                "segments": [{"id": "a", "state": "WEIRD"}],
            }
        ).encode(),
    ],
)
def test_corrupt_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / METADATA_FILE).write_bytes(content)
    with pytest.raises(MetadataCorrupt):
        RemoteLogMetadata.load(tmp_path, "orders", 3)
