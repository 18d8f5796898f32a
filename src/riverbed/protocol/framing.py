"""Kafka framing, sans-io: an int32 size, a request header, a body.

``FrameDecoder`` splits a byte stream into frames and refuses a size prefix above the
configured maximum *before* buffering the frame, so a hostile length never allocates.
``parse_request_header`` reads the request header (v1, or v2 for flexible versions) and
``frame_response`` builds a response frame (header v0, or v1 with an empty tag section).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from .errors import DecodeError
from .primitives import Buffer, Reader

_SIZE = struct.Struct(">i")
_HEADER_FIXED = struct.Struct(">hhi")
_RESP_V0 = struct.Struct(">ii")

API_VERSIONS_KEY = 18
CONTROLLED_SHUTDOWN_KEY = 7


class FrameTooLarge(DecodeError):
    """A size prefix above the limit (or negative): the connection must be closed."""


class FrameDecoder:
    """Incremental splitter of size-prefixed frames, for ``asyncio.BufferedProtocol``.

    The transport reads straight into the buffers this hands out (``get_buffer`` /
    ``buffer_updated``): small frames land in a 16 KiB staging buffer and are copied out
    once; a frame above 8 KiB gets a buffer of its own as soon as its size is known, and the
    rest of it is read directly into that buffer, so a large produce request is not copied
    in user space at all after its first read. A frame up to 1 MiB is allocated whole when
    its size prefix arrives (as Kafka's broker does, after checking the limit); a larger one
    grows as its bytes arrive, so a hostile size prefix never allocates more than twice what
    was sent. ``receive_data`` feeds bytes from a plain ``Protocol`` the same way.

    Frames are returned in order by ``next_frame``; a size prefix above the limit (or
    negative) raises ``FrameTooLarge`` there, after the frames before it."""

    __slots__ = ("_end", "_error", "_filled", "_frame", "_frame_size", "_ready", "_stage", "_start", "max_frame_size")

    STAGE = 16 * 1024
    OWN_BUFFER = 8 * 1024  # frames above this get a buffer of their own
    ALLOCATE_WHOLE = 1 << 20  # frames up to this are allocated whole when their size arrives

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._stage: bytearray | None = None  # released whenever it holds nothing unread
        self._start = self._end = 0
        self._frame: bytearray | None = None  # a large frame being filled
        self._frame_size = self._filled = 0
        self._ready: deque[bytearray] = deque()
        self._error: DecodeError | None = None

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the transport should put the next bytes it reads (never empty)."""
        frame = self._frame
        if frame is not None:
            if self._filled == len(frame):  # a large frame growing with its data
                grown = bytearray(min(self._frame_size, 2 * len(frame)))
                grown[: self._filled] = frame
                self._frame = frame = grown
            return memoryview(frame)[self._filled :]
        stage = self._stage
        if stage is None or self._error is not None:
            self._stage = stage = bytearray(self.STAGE)
            self._start = self._end = 0
        elif self._end == len(stage):  # an incomplete small frame at the end: move it to the front
            unread = self._end - self._start
            stage[:unread] = stage[self._start : self._end]
            self._start, self._end = 0, unread
        return memoryview(stage)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the buffer from the last ``get_buffer``."""
        if self._error is not None:
            return  # the connection is closing: drop what follows the bad frame
        frame = self._frame
        if frame is not None:
            self._filled += nbytes
            if self._filled == self._frame_size:
                self._ready.append(frame)
                self._frame = None
            return
        self._end += nbytes
        self._split()

    def receive_data(self, data: Buffer) -> None:
        """Bytes from a plain ``asyncio.Protocol`` (or a test)."""
        view = memoryview(data).cast("B")
        while view:
            buf = self.get_buffer()
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def _split(self) -> None:
        stage = self._stage
        assert stage is not None
        start, end = self._start, self._end
        while end - start >= 4:
            (size,) = _SIZE.unpack_from(stage, start)
            if size < 0 or size > self.max_frame_size:
                self._error = FrameTooLarge(f"frame size {size} outside [0, {self.max_frame_size}]")
                start = end
                break
            if end - start - 4 >= size:
                self._ready.append(stage[start + 4 : start + 4 + size])
                start += 4 + size
                continue
            if size > self.OWN_BUFFER:
                have = end - start - 4
                frame = bytearray(size if size <= self.ALLOCATE_WHOLE else min(size, max(self.ALLOCATE_WHOLE, 2 * have)))
                frame[:have] = stage[start + 4 : end]
                self._frame, self._frame_size, self._filled = frame, size, have
                start = end
            break
        if start == end:
            self._stage = None
            self._start = self._end = 0
        else:
            self._start, self._end = start, end

    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        unread = self._end - self._start if self._stage is not None else 0
        return unread + (self._filled if self._frame is not None else 0) + sum(len(f) + 4 for f in self._ready)

    def next_frame(self) -> bytearray | None:
        """The next complete frame body (without its size), or None if more bytes are needed.
        It is a fresh, writable buffer: the broker patches batch base offsets in place."""
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        return None


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int  # where the body starts in the frame


def peek_correlation(frame: Buffer) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) from the first 8 bytes of a frame."""
    if len(frame) < 8:
        raise DecodeError("frame shorter than a request header")
    key, version, corr = _HEADER_FIXED.unpack_from(frame, 0)
    return int(key), int(version), int(corr)


def parse_request_header(frame: Buffer, flexible: bool) -> RequestHeader:
    """Parse the request header; ``flexible`` selects header v2 (a tag section after client_id).
    The client id is a classic nullable string in every header version."""
    key, version, corr = peek_correlation(frame)
    r = Reader(frame, 8)
    client_id = r.nullable_string(False)
    if flexible:
        r.skip_tags()
    return RequestHeader(key, version, corr, client_id, r.pos)


def frame_response(correlation_id: int, body: list[Buffer], *, flexible_header: bool) -> list[Buffer]:
    """Chunks of a response frame: size, correlation id, optional empty tags, body."""
    size = 4 + (1 if flexible_header else 0) + sum(len(c) for c in body)
    head = _RESP_V0.pack(size, correlation_id)
    if flexible_header:
        head += b"\x00"
    return [head, *body]
