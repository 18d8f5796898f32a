"""S3Store and the remote log manager against a real S3-compatible server: moto's
standalone server, started here on a free port (skipped when moto is not installed)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent / "unit" / "storage"))
sys.path.insert(0, str(_HERE.parent / "unit" / "storage" / "remote"))

from remote_helpers import FakeTieredLog  # noqa: E402
from storage_helpers import headers, make_batch, read_all  # noqa: E402

from riverbed.protocol.records.records import decode_records  # noqa: E402
from riverbed.storage import LogConfig, SegmentLog  # noqa: E402
from riverbed.storage.remote import (  # noqa: E402
    ObjectNotFound,
    ObjectStoreError,
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemoteLogReader,
    S3Store,
    SegmentState,
    TieringConfig,
)

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    server.stop()


def _store(endpoint: str, bucket: str, **kw: object) -> S3Store:
    options: dict[str, object] = {"connect_timeout": 2, "read_timeout": 5, "max_attempts": 1}
    options.update(kw)
    return S3Store(
        bucket,
        endpoint_url=endpoint,
        access_key="testing",
        secret_key="testing",
        **options,  # type: ignore[arg-type]
    )


def test_object_operations(endpoint: str, tmp_path: Path) -> None:
    store = _store(endpoint, "ops", prefix="riverbed/", multipart_threshold=5 << 20)
    store.create_bucket()
    store.create_bucket()  # idempotent
    store.put_bytes("p/a.log", b"0123456789")
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * (6 << 12))  # 6 MiB: a multipart upload
    store.put_file("p/b.index", big)
    assert store.get("p/a.log") == b"0123456789"
    assert store.get_range("p/a.log", 2, 3) == b"234"
    assert store.get_range("p/a.log", 8, 10) == b"89"
    assert store.get_range("p/a.log", 10, 5) == b""
    assert store.get_range("p/b.index", 5 << 20, 4) == big.read_bytes()[5 << 20 : (5 << 20) + 4]
    assert store.head("p/b.index") == big.stat().st_size
    assert store.head("p/missing") is None
    assert store.list("p/") == ["p/a.log", "p/b.index"]
    assert store.client.list_objects_v2(Bucket="ops")["KeyCount"] == 2  # under the prefix
    store.delete("p/a.log")
    store.delete("p/a.log")
    assert store.list("") == ["p/b.index"]
    with pytest.raises(ObjectNotFound):
        store.get("p/a.log")
    with pytest.raises(ObjectStoreError) as err:
        _store(endpoint, "no-such-bucket").put_bytes("k", b"v")
    assert not err.value.retriable


def test_unreachable_endpoint_is_retriable() -> None:
    store = _store(f"http://127.0.0.1:{_free_port()}", "b", connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(ObjectStoreError) as err:
        store.head("k")
    assert err.value.retriable


def test_tiering_through_s3(endpoint: str, tmp_path: Path) -> None:
    store = _store(endpoint, "tiers")
    store.create_bucket()
    log = SegmentLog.create(
        tmp_path / "t-0",
        "t",
        0,
        LogConfig(segment_bytes=800, index_interval_bytes=200, retention_ms=-1),
    )
    try:
        for i in range(40):
            log.append(make_batch(3, timestamp=1000 + i, value_size=30), now_ms=1000 + i)
        log.flush()
        original = read_all(log)
        fake = FakeTieredLog(log)
        rlm = RemoteLogManager(store, RemoteLogManagerConfig(max_copies_per_pass=100))
        meta = rlm.register(fake, TieringConfig(True, local_retention_ms=0))
        assert rlm.run_once() == 0
        finished = meta.finished()
        assert len(finished) >= 4 and fake.dropped
        assert all(s.state is SegmentState.COPY_FINISHED for s in meta.segments())
        assert sorted(store.list(meta.prefix)) == sorted(
            k for s in finished for k in s.keys(meta.prefix)
        )
        reader = RemoteLogReader(store, block_size=512)
        out = bytearray()
        offset = 0
        while offset < log.high_watermark:
            data = reader.read(meta, offset, 700) if offset < log.log_start_offset else None
            if data is None:
                data = bytes(log.read(offset, 700).records)
            out += data
            offset = headers(data)[-1].next_offset
        assert bytes(out) == original
        assert reader.offset_for_timestamp(meta, 1005, 0) == log_offset_for(original, 1005)
        # total retention deletes the remote objects
        log.update_config(LogConfig(segment_bytes=800, index_interval_bytes=200, retention_ms=1))
        rlm.run_once()
        assert meta.finished() == []
        assert store.list(meta.prefix) == []
        assert fake.log_start_offset == finished[-1].last_offset + 1
    finally:
        log.close(clean=False)


def log_offset_for(data: bytes, ts: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record whose timestamp is >= ts (as ListOffsets)."""
    for h in headers(data):
        if h.max_timestamp >= ts:
            for r in decode_records(data, h.position):
                if r.timestamp >= ts:
                    return r.offset, r.timestamp
    return None
