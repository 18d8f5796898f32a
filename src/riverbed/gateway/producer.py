"""A confluent-kafka producer for asyncio: ``await send(...)`` resolves when the broker has
acknowledged the record (acks=all), through delivery callbacks bridged to futures.

One background thread polls the producer (it runs the callbacks); the event loop only enqueues.
A full local queue or a failed delivery raises :class:`NotStored`, which HTTP handlers answer
with 503 and Retry-After: nothing is acknowledged that the broker did not store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from riverbed.client import ClusterSettings, producer

log = logging.getLogger("riverbed.gateway")

Headers = list[tuple[str, bytes]]


class NotStored(Exception):
    """The broker did not acknowledge the record (down, timed out, or refused it)."""

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class AsyncProducer:
    def __init__(self, settings: ClusterSettings, delivery_timeout_ms: int = 10_000, **overrides: Any) -> None:
        conf: dict[str, Any] = {"linger.ms": 2, "message.timeout.ms": delivery_timeout_ms, **overrides}
        self._producer = producer(settings, **conf)
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gateway-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None, headers: Headers | None = None, partition: int | None = None, timestamp: int | None = None) -> Message:
        """Produce and wait for the broker's acknowledgement; the delivered Message."""
        if self._closed:
            raise NotStored("the gateway is shutting down")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Message] = loop.create_future()

        def settle(fut: asyncio.Future[Message], err: KafkaError | None, msg: Message) -> None:
            if fut.done():
                return
            if err is not None:
                fut.set_exception(NotStored(f"{err.name()}: {err.str()}", err.retriable() or err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)))
            else:
                fut.set_result(msg)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(settle, fut, err, msg)

        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers or None, "on_delivery": on_delivery}
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
        return await fut

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
        del self._producer
