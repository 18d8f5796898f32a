"""Claim check: payloads above a threshold go to an object store, the record carries a small
reference (URL, size, SHA-256), and the reader resolves it back, hash verified.

The blob is written (and acknowledged) before the reference is produced, so no reference ever
names a blob that was not written; a store that is down makes the produce fail loudly. Blobs are
named by their content hash (writing the same payload twice stores it once). ``sweep`` deletes
blobs older than the topic's retention.

A referencing record has the header ``riverbed.claim-check: sha256`` and a JSON value such as
``{"url": "s3://bucket/claim-check/ab/abcd...", "size": 52428800, "sha256": "abcd..."}``
(``url_field`` renames ``url``, e.g. to the lecture's ``video_s3_url``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

log = logging.getLogger("riverbed.messaging.claimcheck")

HEADER = "riverbed.claim-check"
Headers = list[tuple[str, bytes]]


class ClaimCheckError(RuntimeError):
    """The object store failed, or a reference cannot be resolved."""


class BlobMissing(ClaimCheckError):
    """The reference names a blob that is not in the store (deleted, swept, wrong store)."""


class BlobCorrupt(ClaimCheckError):
    """The blob's size or SHA-256 differs from the reference's."""


class BlobStore(Protocol):
    def put(self, digest: str, data: bytes) -> str: ...
    def get(self, url: str) -> bytes: ...
    def put_file(self, digest: str, path: Path) -> str: ...
    def get_file(self, url: str, dest: Path) -> None: ...
    def delete(self, url: str) -> None: ...
    def sweep(self, older_than: float, now: float | None = None) -> int: ...


CHUNK = 1 << 20


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _check_digest(digest: str) -> None:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")


class DirectoryStore:
    """Blobs as files under ``root`` (``root/ab/abcd...``), written to a temporary file, synced
    and renamed into place; URLs are ``file://`` URLs that must point inside ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, url: str) -> Path:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise BlobMissing(f"{url!r} is not a file:// URL of this store")
        path = Path(unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.root):
            raise BlobMissing(f"{url!r} is outside the store's directory {self.root}")
        return path

    def put(self, digest: str, data: bytes) -> str:
        _check_digest(digest)
        path = self.root / digest[:2] / digest
        if not path.exists():
            try:
                path.parent.mkdir(exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise ClaimCheckError(
                    f"could not store blob {digest} under {self.root}: {exc}"
                ) from exc
        return path.as_uri()

    def put_file(self, digest: str, path: Path) -> str:
        _check_digest(digest)
        target = self.root / digest[:2] / digest
        if not target.exists():
            try:
                target.parent.mkdir(exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                        shutil.copyfileobj(src, out, CHUNK)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise ClaimCheckError(
                    f"could not store blob {digest} under {self.root}: {exc}"
                ) from exc
        return target.as_uri()

    def get_file(self, url: str, dest: Path) -> None:
        path = self._path(url)
        try:
            shutil.copyfile(path, dest)
        except FileNotFoundError as exc:
            raise BlobMissing(f"blob {url} is gone") from exc
        except OSError as exc:
            raise ClaimCheckError(f"could not read blob {url}: {exc}") from exc

    def get(self, url: str) -> bytes:
        path = self._path(url)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobMissing(f"blob {url} is gone") from exc
        except OSError as exc:
            raise ClaimCheckError(f"could not read blob {url}: {exc}") from exc

    def delete(self, url: str) -> None:
        self._path(url).unlink(missing_ok=True)

    def sweep(self, older_than: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than
        removed = 0
        for path in self.root.glob("??/*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class S3Store:
    """Blobs in an S3 bucket through boto3 (multipart above 8 MiB), under ``prefix``."""

    def __init__(
        self, bucket: str, prefix: str = "claim-check/", client: Any = None, **client_kwargs: Any
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        if client is None:
            import boto3

            client = boto3.client("s3", **client_kwargs)
        self.client = client

    def _key(self, url: str) -> str:
        parsed = urlparse(url)
        key = parsed.path.lstrip("/")
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or not key.startswith(self.prefix):
            raise BlobMissing(f"{url!r} is not in s3://{self.bucket}/{self.prefix}")
        return key

    def put(self, digest: str, data: bytes) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        _check_digest(digest)
        key = f"{self.prefix}{digest[:2]}/{digest}"
        try:
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise ClaimCheckError(
                f"could not store blob {digest} in s3://{self.bucket}: {exc}"
            ) from exc
        return f"s3://{self.bucket}/{key}"

    def put_file(self, digest: str, path: Path) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        _check_digest(digest)
        key = f"{self.prefix}{digest[:2]}/{digest}"
        try:
            self.client.upload_file(str(path), self.bucket, key)  # multipart above 8 MiB
        except (BotoCoreError, ClientError, OSError) as exc:
            raise ClaimCheckError(
                f"could not store blob {digest} in s3://{self.bucket}: {exc}"
            ) from exc
        return f"s3://{self.bucket}/{key}"

    def get_file(self, url: str, dest: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(url)
        try:
            self.client.download_file(self.bucket, key, str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise BlobMissing(f"blob {url} is gone") from exc
            raise ClaimCheckError(f"could not read blob {url}: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise ClaimCheckError(f"could not read blob {url}: {exc}") from exc

    def get(self, url: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(url)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return bytes(body.read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise BlobMissing(f"blob {url} is gone") from exc
            raise ClaimCheckError(f"could not read blob {url}: {exc}") from exc
        except BotoCoreError as exc:
            raise ClaimCheckError(f"could not read blob {url}: {exc}") from exc

    def delete(self, url: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(url))

    def sweep(self, older_than: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than
        removed = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            old = [
                {"Key": o["Key"]}
                for o in page.get("Contents", ())
                if o["LastModified"].timestamp() < cutoff
            ]
            if old:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": old, "Quiet": True}
                )
                removed += len(old)
        return removed


class ClaimCheck:
    """``wrap``/``unwrap`` a record value (with its headers) around an object store."""

    def __init__(
        self, store: BlobStore, threshold: int = 512 * 1024, url_field: str = "url"
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.url_field = url_field

    def wrap(
        self, value: bytes | None, headers: Headers | None = None
    ) -> tuple[bytes | None, Headers]:
        """The value to produce and its headers: unchanged at or below the threshold, else a
        reference to the stored blob. Raises ClaimCheckError when the store fails."""
        headers = [(k, v) for k, v in headers or () if k != HEADER]
        if value is None or len(value) <= self.threshold:
            return value, headers
        digest = hashlib.sha256(value).hexdigest()
        url = self.store.put(digest, value)
        ref = {self.url_field: url, "size": len(value), "sha256": digest}
        return json.dumps(ref, separators=(",", ":")).encode(), [*headers, (HEADER, b"sha256")]

    def wrap_file(
        self, path: str | os.PathLike[str], headers: Headers | None = None
    ) -> tuple[bytes, Headers]:
        """A reference to the file's content, stored without reading it into memory (any
        size: the lecture's 4 GB video); the value and headers to produce."""
        src = Path(path)
        digest, size = file_digest(src)
        url = self.store.put_file(digest, src)
        ref = {self.url_field: url, "size": size, "sha256": digest}
        kept = [(k, v) for k, v in headers or () if k != HEADER]
        return json.dumps(ref, separators=(",", ":")).encode(), [*kept, (HEADER, b"sha256")]

    def produce_file(
        self,
        producer: Any,
        topic: str,
        path: str | os.PathLike[str],
        key: bytes | None = None,
        headers: Headers | None = None,
        **kwargs: Any,
    ) -> None:
        value, headers = self.wrap_file(path, headers)
        producer.produce(topic, value=value, key=key, headers=headers, **kwargs)

    def resolve_to_file(self, msg: Any, dest: str | os.PathLike[str]) -> Path:
        """Writes the message's payload to ``dest`` (streamed from the store for a reference)
        and verifies it; on a mismatch ``dest`` is removed and BlobCorrupt raised."""
        out = Path(dest)
        value, headers = msg.value(), msg.headers()
        if not any(k == HEADER for k, _ in headers or ()):
            out.write_bytes(value or b"")
            return out
        url, size, digest = self._reference(value)
        self.store.get_file(url, out)
        got_digest, got_size = file_digest(out)
        if got_size != size or got_digest != digest:
            out.unlink(missing_ok=True)
            raise BlobCorrupt(
                f"blob {url} does not match its reference (size {got_size} vs {size})"
            )
        return out

    def _reference(self, value: bytes | None) -> tuple[str, int, str]:
        try:
            ref = json.loads(value or b"")
            return str(ref[self.url_field]), int(ref["size"]), str(ref["sha256"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ClaimCheckError(
                f"malformed claim-check reference: {value[:200] if value else value!r}"
            ) from exc

    def unwrap(self, value: bytes | None, headers: Headers | None) -> bytes | None:
        """The payload: the value itself, or the blob its reference names, verified."""
        if not any(k == HEADER for k, _ in headers or ()):
            return value
        url, size, digest = self._reference(value)
        data = self.store.get(url)
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise BlobCorrupt(
                f"blob {url} does not match its reference (size {len(data)} vs {size})"
            )
        return data

    def produce(
        self,
        producer: Any,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
        **kwargs: Any,
    ) -> None:
        value, headers = self.wrap(value, headers)
        producer.produce(topic, value=value, key=key, headers=headers, **kwargs)

    def resolve(self, msg: Any) -> bytes | None:
        """The payload of a confluent-kafka message."""
        return self.unwrap(msg.value(), msg.headers())


def topic_retention_seconds(admin: Any, topic: str, timeout: float = 30.0) -> float | None:
    """The topic's ``retention.ms`` in seconds via confluent-kafka's AdminClient (None when
    retention is unlimited)."""
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    resource = ConfigResource("TOPIC", topic)
    configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    ms = int(configs["retention.ms"].value)
    return None if ms < 0 else ms / 1000.0


def sweep_for_topic(store: BlobStore, admin: Any, topic: str, now: float | None = None) -> int:
    """Deletes the blobs older than ``topic``'s retention (none when it is unlimited)."""
    retention = topic_retention_seconds(admin, topic)
    if retention is None:
        return 0
    removed = store.sweep(retention, now)
    log.info("swept %d blob(s) older than %ss (retention of %s)", removed, retention, topic)
    return removed
