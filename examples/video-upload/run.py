"""The lecture's claim-check scenario, in one command:

    .venv/bin/python examples/video-upload/run.py                       # starts its own broker
    .venv/bin/python examples/video-upload/run.py --bootstrap 127.0.0.1:9092 --store /tmp/blobs

An upload service stores a 20 MiB video in an object store (here a directory; S3Store takes a
bucket) and sends a tiny VideoUploaded CloudEvent whose data holds the reference
(`video_s3_url`, size, sha256) to `video-uploads`, a topic whose max.message.bytes is 1 MiB. The
transcoder consumes it and gets the video back, hash verified. Then the blob is deleted under a
second event's reference, and the transcoder gets a clear BlobMissing error.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.messaging import from_message
from riverbed.messaging.claimcheck import BlobMissing, ClaimCheck, DirectoryStore
from riverbed.testing import example_cluster


def scenario(bootstrap: str, store_dir: Path) -> None:
    topic = f"video-uploads-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, config={"max.message.bytes": str(1 << 20)})])[topic].result(30)
    claim = ClaimCheck(DirectoryStore(store_dir), threshold=256 * 1024, url_field="video_s3_url")

    # the upload service: the blob first, then the small event (structured CloudEvent headers)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    videos = [os.urandom(1 << 20) * 20, os.urandom(1 << 20) * 2]
    for i, video in enumerate(videos):
        headers = [("ce_specversion", b"1.0"), ("ce_id", f"upload-{i}".encode()), ("ce_source", b"/upload"),
                   ("ce_type", b"eu.company.media.video.uploaded.v1"), ("content-type", b"application/json")]
        claim.produce(producer, topic, value=video, key=f"user_{i}".encode(), headers=headers)
    producer.flush(30)
    print(f"uploaded 2 videos ({len(videos[0]) >> 20} MiB and {len(videos[1]) >> 20} MiB) to {topic} (max.message.bytes 1 MiB)")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"transcoder-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    msgs = []
    deadline = time.monotonic() + 60
    while len(msgs) < 2 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            msgs.append(m)
    consumer.close()
    if len(msgs) < 2:
        raise SystemExit("did not consume the 2 events")

    first, second = msgs
    event = from_message(first)  # the event's data is the reference
    print(f"event {event.id} ({len(first.value())} bytes on the topic): video_s3_url={event.data['video_s3_url'].rsplit('/', 1)[-1][:16]}... size={event.data['size']}")
    video = claim.resolve(first) or b""
    ok = hashlib.sha256(video).digest() == hashlib.sha256(videos[0]).digest()
    print(f"transcoder got {len(video) >> 20} MiB back, sha256 {'verified' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit(1)

    claim.store.delete(from_message(second).data["video_s3_url"])  # deleted under its reference
    try:
        claim.resolve(second)
    except BlobMissing as exc:
        print(f"second event: {type(exc).__name__}: blob is gone (a DLQ policy would dead-letter it)")
    else:
        raise SystemExit("the deleted blob should have been missing")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--bootstrap", help="a running cluster (default: start riverbed serve)")
    ap.add_argument("--store", type=Path, help="blob directory (default: a temp dir)")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="video-blobs-"))
    try:
        with example_cluster(args.bootstrap, "video-upload") as bootstrap:
            scenario(bootstrap, store)
    finally:
        if args.store is None:
            shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
