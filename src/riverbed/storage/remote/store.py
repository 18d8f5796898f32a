"""Object stores for tiered storage: a small, blocking interface and two back ends.

* :class:`LocalDirStore` keeps objects as files under a directory (tests, single-host
  set-ups, an NFS mount). Writes are atomic: temp file, fsync, rename, directory fsync.
* :class:`S3Store` speaks the S3 API through boto3 (AWS, MinIO, Ceph, moto...). A
  ``PutObject`` is atomic on S3; a large file goes up as a multipart upload, which also
  becomes visible only when complete.

Every failure surfaces as :class:`ObjectStoreError`; ``retriable`` tells a timeout, a
connection failure, a 5xx or a throttling answer (try again later) from a refusal that
will not change by itself (access denied, no such bucket, bad key). A missing object is
:class:`ObjectNotFound` (not retriable). ``delete`` of a missing object succeeds.

Keys are ``/``-separated relative paths made of ``[A-Za-z0-9._=-]`` segments.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol, cast

from ..files import fsync_dir

__all__ = ["LocalDirStore", "ObjectNotFound", "ObjectStore", "ObjectStoreError", "S3Store"]

_KEY_SEGMENT: Final = re.compile(r"^[A-Za-z0-9._=-]+$")
_LOCAL_TMP: Final = ".tmp-"
_COPY_CHUNK: Final = 1 << 20


class ObjectStoreError(Exception):
    """A failed object-store call. ``retriable``: the same call may succeed later."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class ObjectNotFound(ObjectStoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no such object: {key}", retriable=False)
        self.key = key


class ObjectStore(Protocol):
    """A flat key -> bytes store. Calls block; implementations are thread-safe."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the contents of ``path`` under ``key`` (replacing it), atomically."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start``; fewer at the end of the object, empty at
        or past it."""
        ...

    def head(self, key: str) -> int | None:
        """The size of the object, None when it does not exist."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_SEGMENT.match(p) for p in parts):
        raise ObjectStoreError(f"invalid object key {key!r}", retriable=False)
    if parts[-1].startswith(_LOCAL_TMP):
        raise ObjectStoreError(f"invalid object key {key!r}", retriable=False)
    return key


# -- a local directory -----------------------------------------------------------------------


class LocalDirStore:
    """Objects as files under ``root`` (``key`` is the relative path)."""

    def __init__(self, root: Path, *, fsync: Callable[[int], None] = os.fsync) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, fill: Callable[[int], None]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{_LOCAL_TMP}{uuid.uuid4().hex}-{path.name}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                try:
                    fill(fd)
                    self._fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            fsync_dir(path.parent, self._fsync)
        except OSError as exc:
            raise ObjectStoreError(f"put {key}: {exc}", retriable=True) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        def fill(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        self._write(key, fill)

    def put_file(self, key: str, path: Path) -> None:
        def fill(fd: int) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]

        self._write(key, fill)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreError(f"get {key}: {exc}", retriable=True) from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ObjectStoreError(f"bad range {start}+{length}", retriable=False)
        try:
            with open(self._path(key), "rb") as f:
                return os.pread(f.fileno(), length, start) if length else b""
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreError(f"get {key}: {exc}", retriable=True) from exc

    def head(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ObjectStoreError(f"head {key}: {exc}", retriable=True) from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise ObjectStoreError(f"delete {key}: {exc}", retriable=True) from exc

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for dirpath, _dirs, files in os.walk(self.root):
                rel = Path(dirpath).relative_to(self.root)
                for name in files:
                    if name.startswith(_LOCAL_TMP):
                        continue
                    key = name if rel == Path(".") else f"{rel.as_posix()}/{name}"
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise ObjectStoreError(f"list {prefix}: {exc}", retriable=True) from exc
        return sorted(keys)


# -- S3 ----------------------------------------------------------------------------------------

_RETRIABLE_CODES: Final = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "BadDigest",
        "IncompleteBody",
        "XAmzContentSHA256Mismatch",
    }
)
_NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Store:
    """Objects in an S3 bucket (``prefix`` is prepended to every key).

    ``endpoint_url`` points at an S3-compatible server (MinIO, moto); it uses path-style
    addressing then. ``max_attempts`` is botocore's own retry budget for one call (the
    remote log manager adds its own backoff on top); the timeouts bound every request, so
    a stuck store costs the tiering thread at most ``connect_timeout + read_timeout`` per
    attempt and never a caller of the log."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        multipart_threshold: int = 64 << 20,
        multipart_chunksize: int = 16 << 20,
        client: Any = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        if client is None:
            config = Config(
                region_name=region,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
        self.client: Any = client
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            use_threads=False,
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _call(self, what: str, key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ObjectStoreError:
            raise
        except Exception as exc:
            raise _translate(exc, what, key) from exc

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, first start)."""

        def create() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except Exception as exc:
                if _error_code(exc) not in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                    raise
                self.client.create_bucket(Bucket=self.bucket)

        self._call("create_bucket", self.bucket, create)

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        self._call(
            "put", key, lambda: self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
        )

    def put_file(self, key: str, path: Path) -> None:
        full = self._key(key)
        self._call(
            "put",
            key,
            lambda: self.client.upload_file(str(path), self.bucket, full, Config=self._transfer),
        )

    def get(self, key: str) -> bytes:
        full = self._key(key)

        def get() -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            return cast(bytes, response["Body"].read())

        return cast(bytes, self._call("get", key, get))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ObjectStoreError(f"bad range {start}+{length}", retriable=False)
        if length == 0:
            return b""
        full = self._key(key)

        def get() -> bytes:
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
                )
            except Exception as exc:
                if _error_code(exc) in ("InvalidRange", "416"):
                    return b""
                raise
            return cast(bytes, response["Body"].read())

        data = cast(bytes, self._call("get", key, get))
        if len(data) > length:  # a server that ignored the Range header
            data = data[start : start + length] if start else data[:length]
        return data

    def head(self, key: str) -> int | None:
        full = self._key(key)

        def head() -> int | None:
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=full)
            except Exception as exc:
                if _error_code(exc) in _NOT_FOUND_CODES:
                    return None
                raise
            return int(response["ContentLength"])

        return cast("int | None", self._call("head", key, head))

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def list(self, prefix: str) -> list[str]:
        full = self.prefix + prefix

        def list_keys() -> list[str]:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    keys.append(str(item["Key"])[len(self.prefix) :])
            return sorted(keys)

        return cast("list[str]", self._call("list", prefix, list_keys))


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        if code:
            return code
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status is not None:
            return str(status)
    return ""


def _translate(exc: Exception, what: str, key: str) -> ObjectStoreError:
    """botocore / boto3 exceptions -> ObjectStoreError (or ObjectNotFound)."""
    from botocore import exceptions as bx

    code = _error_code(exc)
    if code in _NOT_FOUND_CODES:
        return ObjectNotFound(key)
    message = f"{what} {key}: {type(exc).__name__}: {exc}"
    if isinstance(exc, bx.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        retriable = code in _RETRIABLE_CODES or int(status or 0) >= 500 or status == 429
        return ObjectStoreError(message, retriable=retriable)
    if isinstance(exc, bx.NoCredentialsError | bx.ParamValidationError):
        return ObjectStoreError(message, retriable=False)
    # connection errors, timeouts, S3UploadFailedError, truncated bodies...
    return ObjectStoreError(message, retriable=True)
