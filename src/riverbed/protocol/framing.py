"""Kafka framing, sans-io: an int32 size, a request header, a body.

``FrameDecoder`` splits a byte stream into frames and refuses a size prefix above the
configured maximum *before* buffering the frame, so a hostile length never allocates.
``parse_request_header`` reads the request header (v1, or v2 for flexible versions) and
``frame_response`` builds a response frame (header v0, or v1 with an empty tag section).
"""

from __future__ import annotations

import struct
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
    """Incremental splitter of size-prefixed frames."""

    __slots__ = ("_buf", "_pos", "max_frame_size")

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pos = 0

    def receive_data(self, data: Buffer) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_frame(self) -> bytearray | None:
        """The next complete frame body (without its size), or None if more bytes are needed.
        It is a fresh, writable buffer: the broker patches batch base offsets in place."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        (size,) = _SIZE.unpack_from(buf, pos)
        if size < 0 or size > self.max_frame_size:
            raise FrameTooLarge(f"frame size {size} outside [0, {self.max_frame_size}]")
        end = pos + 4 + size
        if len(buf) < end:
            return None
        frame = buf[pos + 4 : end]
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 1 << 20:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return frame


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
