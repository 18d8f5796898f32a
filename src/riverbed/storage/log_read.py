"""The read side of a SegmentLog: fetch, aborted transactions, timestamp lookups.

Each query is answered from the local segments, or, when a remote tier is attached and the
offset lies below the local log start, from the object store. Object-store reads block, so
a caller on the event loop passes ``remote_ok=False`` and gets :class:`NeedsRemote` when it
must retry off the loop.
"""

from __future__ import annotations

from bisect import bisect_right

from .api import NeedsRemote, OffsetOutOfRange, ReadResult
from .log_state import LogState, storage_error
from .remote.metadata import RemoteSegment
from .remote.store import ObjectStoreError
from .segment import Segment
from .txn_index import AbortedTxn, collect_aborted


class ReadMixin(LogState):
    """Reading records and answering offset and timestamp queries."""

    # -- read ------------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one_batch: bool = True,
        isolation_upper: int | None = None,
        remote_ok: bool = True,
    ) -> ReadResult:
        with self._lock:
            self._check_open()
            remote = self._remote
            start = self._log_start if remote is not None else max(self._log_start, self._bases[0])
            if offset < start or offset > self._leo:
                raise OffsetOutOfRange(
                    f"offset {offset} outside [{start}, {self._leo}] "
                    f"of {self._topic}-{self._partition}"
                )
            hw = self._hw
            upper = hw if isolation_upper is None else min(hw, isolation_upper)
            if remote is None or offset >= self._bases[0]:  # local data: the fast path
                records: bytes | memoryview = b""
                if offset < upper:
                    i = max(bisect_right(self._bases, offset) - 1, 0)
                    for segment in self._segments[i:]:
                        if segment.base_offset >= upper:
                            break
                        data = segment.read(offset, max_bytes, upper, min_one_batch)
                        if data is not None:
                            records = data
                            break
                return ReadResult(records, hw, start, self._lso_locked())
            result = ReadResult(b"", hw, start, self._lso_locked())
            local_start = self._bases[0]
        # below the local log start: the object store (blocking; the broker calls this
        # off the event loop)
        assert remote is not None
        if offset >= upper:
            return result
        if not remote_ok:  # decided under the lock: the caller must come back off the loop
            raise NeedsRemote(f"{self._topic}-{self._partition}@{offset}")
        metadata, reader = remote
        try:
            data = reader.read(
                metadata, offset, max_bytes, upper=upper, min_one_batch=min_one_batch
            )
        except ObjectStoreError as exc:
            raise storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
        if data is None:  # nothing remote at or after the offset: continue locally
            return self.read(
                max(offset, local_start),
                max_bytes,
                min_one_batch=min_one_batch,
                isolation_upper=isolation_upper,
            )
        result.records = data
        return result

    # -- transactions ----------------------------------------------------------------------

    def aborted_transactions(self, start_offset: int, upper_offset: int, *, remote_ok: bool = True) -> list[tuple[int, int]]:
        found: list[AbortedTxn] = []
        remote = self._remote
        if remote is not None and start_offset < self._bases[0]:
            if not remote_ok:
                raise NeedsRemote(f"{self._topic}-{self._partition}@{start_offset}")
            try:
                found, complete = remote[1].aborted_transactions(
                    remote[0], start_offset, upper_offset
                )
            except ObjectStoreError as exc:
                raise storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
            if complete:
                found.sort(key=lambda e: (e.first_offset, e.producer_id))
                return [(e.producer_id, e.first_offset) for e in found]
        with self._lock:
            self._check_open()
            i = max(bisect_right(self._bases, start_offset) - 1, 0)
            for segment in self._segments[i:]:
                if collect_aborted(segment.aborted, start_offset, upper_offset, found):
                    break
        # segments already copied to the store but still local were walked twice: each
        # aborted transaction once (a client may count a repeated entry as another abort)
        unique = {(e.producer_id, e.first_offset) for e in found}
        return sorted(unique, key=lambda t: (t[1], t[0]))

    # -- timestamps ------------------------------------------------------------------------

    def offset_for_timestamp(self, ts: int, *, remote_ok: bool = True) -> tuple[int, int] | None:
        remote = self._remote
        if remote is not None and self._log_start < self._bases[0]:
            if not remote_ok:
                raise NeedsRemote(f"{self._topic}-{self._partition} by timestamp")
            try:
                found = remote[1].offset_for_timestamp(remote[0], ts, self._log_start)
            except ObjectStoreError as exc:
                raise storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
            if found is not None and found[0] < self._hw:
                return max(found[0], self._log_start), found[1]
        with self._lock:
            self._check_open()
            log_start = self._log_start
            for segment in self._segments:
                if segment.next_offset <= log_start or segment.max_timestamp < ts:
                    continue
                found = segment.find_timestamp(ts, log_start)
                if found is not None:
                    offset, timestamp = found
                    if offset >= self._hw:
                        return None
                    return max(offset, log_start), timestamp
            return None

    def max_timestamp(self, *, remote_ok: bool = True) -> tuple[int, int]:
        best_ts, best_offset = -1, -1
        best_remote: RemoteSegment | None = None
        remote = self._remote
        if remote is not None and self._log_start < self._bases[0]:
            # the candidates from the metadata alone: a remote segment whose largest
            # timestamp lies below the log start is skipped
            for s in remote[0].finished():
                if (
                    s.offset_of_max_timestamp >= self._log_start
                    and s.max_timestamp > best_ts
                ):
                    best_ts, best_offset, best_remote = s.max_timestamp, s.offset_of_max_timestamp, s
        with self._lock:
            self._check_open()
            log_start = self._log_start
            best_local: Segment | None = None
            for segment in self._segments:
                if segment.next_offset <= log_start or segment.max_timestamp <= best_ts:
                    continue
                ts, offset = segment.max_timestamp_from(log_start)
                if ts > best_ts:
                    best_ts, best_offset, best_local = ts, offset, segment
            if best_ts < 0 or best_offset >= self._hw:
                return -1, -1  # as Kafka: nothing when the answer is not visible yet
            if best_local is not None:
                # the record holding the timestamp, not its batch's base offset (Kafka)
                return best_local.offset_of_timestamp(best_offset, best_ts, log_start), best_ts
            if best_remote is None:
                return max(best_offset, log_start), best_ts
        assert remote is not None
        if not remote_ok:  # the record is in the object store: come back off the loop
            raise NeedsRemote(f"{self._topic}-{self._partition} max timestamp")
        try:
            offset = remote[1].offset_of_timestamp(
                remote[0], best_remote, best_offset, best_ts, log_start
            )
        except ObjectStoreError as exc:
            raise storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
        return offset, best_ts
