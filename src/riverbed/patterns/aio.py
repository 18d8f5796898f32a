"""The asyncio API: await commands, loads, projections and sagas from an event loop.

confluent-kafka's clients block, and an owner or projector must be driven by one thread, so
each component here runs on its own worker thread and hands results back to the loop through
futures; nothing blocks the event loop.

    owner = AsyncOwner(AggregateOwner(store, Account, types, "bank"))
    await owner.start()
    result = await owner.execute("acc-1", Deposit(100))
    account = await AsyncRepository(Repository(store, Account, types)).load("acc-1")
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from .aggregate import A
from .owner import AggregateOwner, CommandBus, CommandResult
from .projections import PostgresProjector, RedisProjector
from .repository import Repository
from .saga_state import SagaState
from .sagas import SagaOrchestrator

T = TypeVar("T")


class _Worker:
    """A thread that runs submitted calls in order and, between them, a background step."""

    def __init__(self, name: str, step: Callable[[], Any] | None) -> None:
        self._step = step
        self._calls: queue.Queue[tuple[Callable[[], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._calls.get(timeout=0 if self._step is not None else 0.1)
            except queue.Empty:
                item = None
            if item is not None:
                fn, loop, fut = item
                try:
                    result = fn()
                except BaseException as exc:
                    loop.call_soon_threadsafe(_set_exception, fut, exc)
                else:
                    loop.call_soon_threadsafe(_set_result, fut, result)
                continue
            if self._step is not None:
                try:
                    self._step()
                except Exception as exc:  # kept for the owner of the worker to see
                    self.error = exc
                    self._stop.set()

    async def call(self, fn: Callable[[], T]) -> T:
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, loop, fut))
        return await fut

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 30)


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class AsyncOwner(Generic[A]):
    """An AggregateOwner polled on its own thread; commands are awaited."""

    def __init__(self, owner: AggregateOwner[A], poll_timeout: float = 0.05) -> None:
        self.owner = owner
        self._worker = _Worker(f"riverbed-owner-{owner.app_id}", lambda: owner.poll(poll_timeout))

    async def start(self, partitions: int | None = None, timeout: float = 30.0) -> set[int]:
        """Starts polling and waits until this owner holds ``partitions`` (default: all)."""
        self._worker.start()
        want = self.owner.store.partitions if partitions is None else partitions
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.owner.owned) < want:
            if self._worker.error is not None:
                raise self._worker.error
            if loop.time() > deadline:
                raise TimeoutError(f"owner holds {sorted(self.owner.owned)} after {timeout} s")
            await asyncio.sleep(0.02)
        return set(self.owner.owned)

    async def execute(self, aggregate_id: str, command: Any, expected_version: int | None = None) -> CommandResult:
        return await self._worker.call(lambda: self.owner.execute(aggregate_id, command, expected_version))

    async def aggregate(self, aggregate_id: str) -> A:
        return await self._worker.call(lambda: self.owner.aggregate(aggregate_id))

    async def close(self) -> None:
        await self._worker.stop()
        await asyncio.to_thread(self.owner.close)


class AsyncRepository(Generic[A]):
    def __init__(self, repository: Repository[A]) -> None:
        self.repository = repository

    async def load(self, aggregate_id: str, *, as_of_version: int | None = None, as_of_time: datetime | None = None, use_snapshot: bool = True) -> A:
        return await asyncio.to_thread(lambda: self.repository.load(aggregate_id, as_of_version=as_of_version, as_of_time=as_of_time, use_snapshot=use_snapshot))

    async def close(self) -> None:
        await asyncio.to_thread(self.repository.close)


class AsyncCommandBus:
    """Sends commands through the command topic and awaits their results."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus
        self._worker = _Worker("riverbed-command-bus", None)
        self._worker.start()

    async def send(self, aggregate_id: str, command: Any, expected_version: int | None = None) -> str:
        return await self._worker.call(lambda: self.bus.send(aggregate_id, command, expected_version))

    async def execute(self, aggregate_id: str, command: Any, expected_version: int | None = None, timeout: float = 30.0) -> CommandResult:
        cid = await self.send(aggregate_id, command, expected_version)
        return (await self._worker.call(lambda: self.bus.wait([cid], timeout)))[cid]

    async def close(self) -> None:
        await self._worker.call(self.bus.close)
        await self._worker.stop()


class AsyncProjector:
    """A PostgreSQL or Redis projector polled on its own thread."""

    def __init__(self, projector: PostgresProjector | RedisProjector, poll_timeout: float = 0.1) -> None:
        self.projector = projector
        self._worker = _Worker("riverbed-projector", lambda: projector.poll(poll_timeout))

    async def start(self) -> None:
        self._worker.start()

    async def lag(self) -> dict[str, int]:
        return await self._worker.call(self.projector.lag)

    async def wait_caught_up(self, timeout: float = 60.0) -> None:
        ends = await self._worker.call(self.projector.ends)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = await self._worker.call(self.projector._done)
            if all(done.get(k, 0) >= v for k, v in ends.items()):
                return
            if self._worker.error is not None:
                raise self._worker.error
            if loop.time() > deadline:
                raise TimeoutError(f"projector not caught up after {timeout} s")
            await asyncio.sleep(0.02)

    async def rebuild(self, timeout: float = 600.0) -> None:
        await self._worker.call(lambda: self.projector.rebuild(timeout))

    async def close(self) -> None:
        await self._worker.stop()
        await asyncio.to_thread(self.projector.close)


class AsyncSagaOrchestrator:
    """A SagaOrchestrator polled on its own thread; ``await finished(id)`` waits for an instance."""

    def __init__(self, orchestrator: SagaOrchestrator, poll_timeout: float = 0.05) -> None:
        self.orchestrator = orchestrator
        self._worker = _Worker("riverbed-saga", lambda: orchestrator.poll(poll_timeout))
        self._worker.start()

    async def start_saga(self, data: dict[str, Any], saga_id: str | None = None) -> str:
        return self.orchestrator.start(data, saga_id)  # thread-safe: queued for the next poll

    async def finished(self, saga_id: str, timeout: float = 60.0) -> SagaState:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            s = self.orchestrator.state(saga_id)
            if s is not None and s.finished:
                return s
            if self._worker.error is not None:
                raise self._worker.error
            if loop.time() > deadline:
                raise TimeoutError(f"saga {saga_id} not finished after {timeout} s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self._worker.stop()
        await asyncio.to_thread(self.orchestrator.close)
