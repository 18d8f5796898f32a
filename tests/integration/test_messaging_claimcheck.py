"""Claim check through a real broker, with a directory store and with S3 (moto's standalone
server on a free port)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from riverbed.messaging.claimcheck import (
    HEADER,
    BlobCorrupt,
    BlobMissing,
    ClaimCheck,
    ClaimCheckError,
    DirectoryStore,
    S3Store,
    sweep_for_topic,
)
from riverbed.messaging.deadletter import (
    H_EXC_CLASS,
    DeadLetterConsumer,
    RetryPolicy,
    create_topics,
    header,
)
from riverbed.testing import EmbeddedBroker, free_port

from .messaging_helpers import consumer, create, producer, read_topic, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _s3(endpoint: str, bucket: str, create_bucket: bool = True) -> S3Store:
    from botocore.config import Config

    store = S3Store(bucket, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                    config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))
    if create_bucket:
        store.client.create_bucket(Bucket=bucket)
    return store


def test_50_mib_round_trips_through_a_1_mib_topic(riverbed_broker: EmbeddedBroker, s3_endpoint: str) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"videos-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic, config={"max.message.bytes": str(1 << 20)})
    claim = ClaimCheck(_s3(s3_endpoint, f"videos-{uuid.uuid4().hex[:6]}"), threshold=256 * 1024, url_field="video_s3_url")
    video = os.urandom(1 << 20) * 50  # 50 MiB
    p = producer(bootstrap)
    claim.produce(p, topic, value=video, key=b"upload-1", headers=[("ce_type", b"video.uploaded")])
    claim.produce(p, topic, value=b"small", key=b"upload-2")
    assert p.flush(30) == 0

    big, small = read_topic(bootstrap, topic, 2)
    ref = json.loads(big.value())
    assert len(big.value()) < 300
    assert ref["size"] == 50 << 20 and ref["sha256"] == hashlib.sha256(video).hexdigest()
    assert ref["video_s3_url"].startswith("s3://videos-")
    assert dict(big.headers()) == {"ce_type": b"video.uploaded", HEADER: b"sha256"}
    assert claim.resolve(big) == video
    assert small.value() == b"small" and small.headers() is None and claim.resolve(small) == b"small"


def test_store_down_fails_the_produce_and_leaves_no_reference(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"videos-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic)
    dead_endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    claim = ClaimCheck(_s3(dead_endpoint, "videos", create_bucket=False), threshold=10)
    p = producer(bootstrap)
    with pytest.raises(ClaimCheckError, match="could not store blob"):
        claim.produce(p, topic, value=b"x" * 100)
    claim.produce(p, topic, value=b"marker")  # small: no store involved
    assert p.flush(30) == 0
    [only] = read_topic(bootstrap, topic, 1)
    assert only.value() == b"marker"  # the failed produce left nothing


def test_blob_deleted_under_a_reference_goes_to_the_dlq(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"videos-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=1, retry_delays=(), non_retryable=(BlobMissing, BlobCorrupt))
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    store = DirectoryStore(tmp_path / "blobs")
    claim = ClaimCheck(store, threshold=10)
    p = producer(bootstrap)
    claim.produce(p, topic, value=b"a" * 100, key=b"gone")
    claim.produce(p, topic, value=b"b" * 100, key=b"kept")
    assert p.flush(30) == 0
    gone_ref = json.loads(read_topic(bootstrap, topic, 1)[0].value())
    store.delete(gone_ref["url"])

    got: list[bytes] = []

    def handle(msg: Any) -> None:
        got.append(claim.resolve(msg) or b"")

    c = consumer(bootstrap)
    dlc = DeadLetterConsumer(c, p, handle, policy)
    dlc.subscribe([topic])
    try:
        wait_until(lambda: got == [b"b" * 100], "the intact record", step=lambda: dlc.poll(0.2))
    finally:
        c.close()
    [dead] = read_topic(bootstrap, f"{topic}.DLQ", 1)
    assert dead.key() == b"gone"
    assert header(dead.headers(), H_EXC_CLASS) == "riverbed.messaging.claimcheck.BlobMissing"


def test_tampered_blob_and_foreign_urls_are_refused(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "blobs")
    claim = ClaimCheck(store, threshold=4)
    value, headers = claim.wrap(b"payload-1")
    url = json.loads(value or b"")["url"]
    Path(url.removeprefix("file://")).write_bytes(b"payload-2")
    with pytest.raises(BlobCorrupt):
        claim.unwrap(value, headers)
    outside = tmp_path / "secret"
    outside.write_bytes(b"x" * 9)
    forged = json.dumps({"url": outside.as_uri(), "size": 9, "sha256": hashlib.sha256(b"x" * 9).hexdigest()}).encode()
    with pytest.raises(BlobMissing, match="outside"):
        claim.unwrap(forged, headers)
    with pytest.raises(ClaimCheckError, match="malformed"):
        claim.unwrap(b"{not json", headers)


def test_sweep_deletes_blobs_older_than_the_topic_retention(riverbed_broker: EmbeddedBroker, tmp_path: Path, s3_endpoint: str) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"videos-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic, config={"retention.ms": str(3_600_000)})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    store = DirectoryStore(tmp_path / "blobs")
    claim = ClaimCheck(store, threshold=4)
    old_url = json.loads(claim.wrap(b"old payload")[0] or b"")["url"]
    new_url = json.loads(claim.wrap(b"new payload")[0] or b"")["url"]
    two_hours_ago = time.time() - 7200
    os.utime(old_url.removeprefix("file://"), (two_hours_ago, two_hours_ago))
    assert sweep_for_topic(store, admin, topic) == 1
    with pytest.raises(BlobMissing):
        store.get(old_url)
    assert store.get(new_url) == b"new payload"

    s3 = _s3(s3_endpoint, f"sweep-{uuid.uuid4().hex[:6]}")
    s3_url = s3.put(hashlib.sha256(b"v").hexdigest(), b"v")
    assert sweep_for_topic(s3, admin, topic) == 0  # younger than an hour
    assert sweep_for_topic(s3, admin, topic, now=time.time() + 7200) == 1
    with pytest.raises(BlobMissing):
        s3.get(s3_url)


@pytest.mark.parametrize("backend", ["directory", "s3"])
def test_a_file_streams_through_without_being_read_into_memory(backend: str, riverbed_broker: EmbeddedBroker, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"videos-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic, config={"max.message.bytes": str(1 << 20)})
    store: Any = DirectoryStore(tmp_path / "blobs") if backend == "directory" else _s3(request.getfixturevalue("s3_endpoint"), f"files-{uuid.uuid4().hex[:6]}")
    claim = ClaimCheck(store, url_field="video_s3_url")
    video = tmp_path / "video.mp4"
    h = hashlib.sha256()
    with open(video, "wb") as f:
        for _ in range(40):  # 40 MiB
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    p = producer(bootstrap)
    claim.produce_file(p, topic, video, key=b"upload-1")
    assert p.flush(30) == 0
    [msg] = read_topic(bootstrap, topic, 1)
    ref = json.loads(msg.value())
    assert ref["size"] == 40 << 20 and ref["sha256"] == h.hexdigest()
    out = claim.resolve_to_file(msg, tmp_path / "copy.mp4")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == h.hexdigest()
    if backend == "directory":  # a tampered blob: refused, and no partial file left behind
        Path(ref["video_s3_url"].removeprefix("file://")).write_bytes(b"not the video")
        with pytest.raises(BlobCorrupt):
            claim.resolve_to_file(msg, tmp_path / "bad.mp4")
        assert not (tmp_path / "bad.mp4").exists()
    store.delete(ref["video_s3_url"])
    with pytest.raises(BlobMissing):
        claim.resolve_to_file(msg, tmp_path / "gone.mp4")


def test_store_down_fails_a_file_produce(tmp_path: Path) -> None:
    claim = ClaimCheck(_s3(f"http://127.0.0.1:{free_port()}", "videos", create_bucket=False))
    video = tmp_path / "v"
    video.write_bytes(b"x" * 1000)
    with pytest.raises(ClaimCheckError, match="could not store blob"):
        claim.wrap_file(video)
