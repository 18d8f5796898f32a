"""Declaring aggregates, commands and events as dataclasses.

    types = TypeRegistry()

    @types.event("Deposited", version=1)
    @dataclass(frozen=True)
    class Deposited:
        amount: int

    @types.command("Deposit")
    @dataclass(frozen=True)
    class Deposit:
        amount: int

    @dataclass
    class Account(Aggregate):
        aggregate_type = "account"
        balance: int = 0

        def decide(self, command):            # command -> events, or raise CommandRejected
            if isinstance(command, Deposit):
                return [Deposited(command.amount)]
            raise CommandRejected(f"unknown command {command!r}")

        def apply(self, event):               # event -> new state (never fails)
            if isinstance(event, Deposited):
                self.balance += event.amount

An aggregate's state is its dataclass fields (that is also what a snapshot stores); ``id`` and
``version`` are set by the repository.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from .envelope import Envelope
from .errors import InvalidEnvelope, UnknownEventType
from .upcasting import Upcasters

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class _Declared:
    name: str
    version: int
    cls: type[Any]


class TypeRegistry:
    """The event and command types an application knows, with each event's current version,
    and the upcasters that bring older stored versions up to it."""

    def __init__(self, upcasters: Upcasters | None = None) -> None:
        self.upcasters = upcasters or Upcasters()
        self._events: dict[str, _Declared] = {}
        self._event_names: dict[type[Any], _Declared] = {}
        self._commands: dict[str, type[Any]] = {}
        self._command_names: dict[type[Any], str] = {}

    def event(self, name: str, version: int = 1) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"event {name} must be a dataclass")
            if name in self._events:
                raise ValueError(f"event type {name} is already registered")
            d = _Declared(name, version, cls)
            self._events[name] = d
            self._event_names[cls] = d
            return cls

        return deco

    def command(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"command {name} must be a dataclass")
            self._commands[name] = cls
            self._command_names[cls] = name
            return cls

        return deco

    # --- events ----------------------------------------------------------------------------
    def event_name(self, event: Any) -> tuple[str, int]:
        d = self._event_names.get(type(event))
        if d is None:
            raise UnknownEventType(f"{type(event).__name__} is not a registered event type")
        return d.name, d.version

    def current_version(self, name: str) -> int:
        d = self._events.get(name)
        if d is None:
            raise UnknownEventType(f"unknown event type {name!r} (known: {', '.join(sorted(self._events)) or 'none'})")
        return d.version

    def upcast(self, env: Envelope) -> Envelope:
        """The envelope with its data upcast to the current version of its type."""
        target = self.current_version(env.event_type)
        if env.event_version == target:
            return env
        return env.with_data(target, self.upcasters.upcast(env.event_type, env.event_version, env.data, target))

    def to_event(self, env: Envelope) -> Any:
        """The typed event object of an envelope (upcast first)."""
        env = self.upcast(env)
        cls = self._events[env.event_type].cls
        try:
            return cls(**env.data)
        except TypeError as exc:
            raise InvalidEnvelope(f"{env.event_type} v{env.event_version} data does not fit {cls.__name__}: {exc}") from exc

    def event_data(self, event: Any) -> dict[str, Any]:
        return dataclasses.asdict(event)

    # --- commands --------------------------------------------------------------------------
    def command_name(self, command: Any) -> str:
        name = self._command_names.get(type(command))
        if name is None:
            raise UnknownEventType(f"{type(command).__name__} is not a registered command type")
        return name

    def to_command(self, name: str, data: dict[str, Any]) -> Any:
        cls = self._commands.get(name)
        if cls is None:
            raise UnknownEventType(f"unknown command type {name!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidEnvelope(f"command {name} data does not fit {cls.__name__}: {exc}") from exc


class Aggregate:
    """Base of an event-sourced aggregate (make the subclass a dataclass with defaults).

    ``aggregate_type`` names the aggregate in topics and envelopes; ``snapshot_version`` is the
    version of the state's shape (raise it when the fields change and register a snapshot
    upcaster under ``"<aggregate_type>@snapshot"`` to keep old snapshots usable)."""

    aggregate_type: ClassVar[str] = "aggregate"
    snapshot_version: ClassVar[int] = 1
    id: str = ""
    version: int = 0

    def decide(self, command: Any) -> Sequence[Any]:
        """The events a command causes; raise CommandRejected to refuse it."""
        raise NotImplementedError

    def apply(self, event: Any) -> None:
        """Change the state by one event (called on replay and after a command)."""
        raise NotImplementedError

    # --- state -----------------------------------------------------------------------------
    @classmethod
    def create(cls: type[A], aggregate_id: str) -> A:
        agg = cls()
        agg.id, agg.version = aggregate_id, 0
        return agg

    def state(self) -> dict[str, Any]:
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a dataclass to be snapshotted")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_state(cls: type[A], aggregate_id: str, version: int, state: dict[str, Any]) -> A:
        agg = cls(**state)
        agg.id, agg.version = aggregate_id, version
        return agg

    def copy(self: A) -> A:
        return type(self).from_state(self.id, self.version, {k: _clone(v) for k, v in self.state().items()})


A = TypeVar("A", bound=Aggregate)


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, set):
        return set(value)
    return value
