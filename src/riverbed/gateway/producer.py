"""A confluent-kafka producer for asyncio: ``await send(...)`` resolves when the broker has
acknowledged the record (acks=all), through delivery callbacks bridged to futures.

One background thread polls the producer (it runs the callbacks); the event loop only enqueues.
The delivery reports of one poll are handed to the event loop together (one
``call_soon_threadsafe`` per poll, not per record: each wakes the loop through its self-pipe).
A full local queue or a failed delivery raises :class:`NotStored`, which HTTP handlers answer
with 503 and Retry-After: nothing is acknowledged that the broker did not store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from riverbed.client import ClusterSettings, producer

log = logging.getLogger("riverbed.gateway")

Headers = list[tuple[str, bytes]]
_SWEEP = 0.1  # seconds between checks of send_within's deadlines


class NotStored(Exception):
    """The broker did not acknowledge the record (down, timed out, or refused it)."""

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class AsyncProducer:
    def __init__(self, settings: ClusterSettings, delivery_timeout_ms: int = 10_000, linger_ms: int = 2, **overrides: Any) -> None:
        conf: dict[str, Any] = {"linger.ms": linger_ms, "message.timeout.ms": delivery_timeout_ms, **overrides}
        self._producer = producer(settings, **conf)
        self._closed = False
        self._reports: list[tuple[asyncio.Future[Message], KafkaError | None, Message]] = []
        self._reports_lock = threading.Lock()
        # send_within's futures by timeout, oldest first (one event loop: the gateway's)
        self._deadlines: dict[float, collections.deque[tuple[float, asyncio.Future[Message]]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gateway-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)
            self._hand_over()

    def _delivered(self, fut: asyncio.Future[Message], err: KafkaError | None, msg: Message) -> None:
        """librdkafka's delivery report (on the thread that polls): kept for :meth:`_hand_over`."""
        with self._reports_lock:
            self._reports.append((fut, err, msg))

    def _hand_over(self) -> None:
        """Settle the futures of the reports collected so far, on their event loop, in one call."""
        with self._reports_lock:
            reports, self._reports = self._reports, []
        if not reports:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Message], KafkaError | None, Message]]] = {}
        for report in reports:
            by_loop.setdefault(report[0].get_loop(), []).append(report)
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these
                loop.call_soon_threadsafe(_settle, batch)

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None, headers: Headers | None = None, partition: int | None = None, timestamp: int | None = None) -> Message:
        """Produce and wait for the broker's acknowledgement; the delivered Message."""
        return await self._submit(topic, value, key, headers, partition, timestamp)

    async def send_within(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None, timeout: float, loop: asyncio.AbstractEventLoop | None = None) -> Message:
        """:meth:`send`, giving up after `timeout` seconds (NotStored, within a tenth of a
        second); the record may still be stored later. No timer or task per call: the futures
        wait in a deadline queue per timeout value (``deque``, in send order, so deadlines
        ascend), which one sweep every 0.1 s expires while anything waits. `loop`: the running
        loop, if the caller has it at hand (on Python 3.11 each lookup is a getpid() syscall)."""
        fut = self._submit(topic, value, key, headers, None, None, loop)
        loop = fut.get_loop()
        waiting = self._deadlines.get(timeout)
        if waiting is None:
            waiting = self._deadlines[timeout] = collections.deque()
        waiting.append((loop.time() + timeout, fut))
        if self._sweeper is None:
            self._sweeper = loop.call_later(_SWEEP, self._sweep, loop)
        return await fut

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire the futures past their deadline; drop the settled ones from the queues' heads."""
        now = loop.time()
        for timeout, waiting in list(self._deadlines.items()):
            while waiting:
                deadline, fut = waiting[0]
                if fut.done():
                    waiting.popleft()
                elif deadline <= now:
                    waiting.popleft()
                    _expire(fut)
                else:
                    break
            if not waiting:
                del self._deadlines[timeout]
        self._sweeper = loop.call_later(_SWEEP, self._sweep, loop) if self._deadlines else None

    def _submit(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None, partition: int | None, timestamp: int | None, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[Message]:
        """Produce; the future of the broker's acknowledgement (NotStored at once if refused)."""
        if self._closed:
            raise NotStored("the gateway is shutting down")
        fut: asyncio.Future[Message] = (loop or asyncio.get_running_loop()).create_future()
        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers or None, "on_delivery": functools.partial(self._delivered, fut)}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        try:
            self._producer.produce(topic, **kwargs)
        except BufferError:
            raise NotStored("the producer's local queue is full") from None
        except KafkaException as exc:
            err = exc.args[0]
            raise NotStored(f"{err.name()}: {err.str()}", err.retriable()) from None
        return fut

    def list_topics(self, timeout: float = 10.0) -> Any:
        if self._closed:
            raise NotStored("the gateway is shutting down")
        return self._producer.list_topics(timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush, stop polling and let go of the client (librdkafka's handle is destroyed with
        the last reference: no reconnect attempts to a cluster that went away)."""
        if self._closed:
            return
        self._closed = True
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(5)
        self._hand_over()  # reports served by flush() on this thread
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        del self._producer


def _settle(batch: list[tuple[asyncio.Future[Message], KafkaError | None, Message]]) -> None:
    for fut, err, msg in batch:
        if fut.done():  # the sender gave up waiting (timeout, cancelled)
            continue
        if err is not None:
            fut.set_exception(NotStored(f"{err.name()}: {err.str()}", err.retriable() or err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)))
        else:
            fut.set_result(msg)


def _expire(fut: asyncio.Future[Message]) -> None:
    if not fut.done():
        fut.set_exception(NotStored("no acknowledgement in time"))
