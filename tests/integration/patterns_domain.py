"""A small domain for the riverbed.patterns tests: a counter and a bank account."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from riverbed.patterns import Aggregate, CommandRejected, TypeRegistry

types = TypeRegistry()


@types.command("Increment")
@dataclass(frozen=True)
class Increment:
    by: int = 1


@types.event("Incremented", version=2)
@dataclass(frozen=True)
class Incremented:
    by: int
    note: str = ""


@types.upcasters.register("Incremented", 1)
def _incremented_v1(data: dict[str, Any]) -> dict[str, Any]:  # v1 had "amount"
    return {"by": data.pop("amount"), "note": "from v1"}


@dataclass
class Counter(Aggregate):
    aggregate_type = "counter"
    total: int = 0
    commands: list[str] = field(default_factory=list)

    def decide(self, command: Any) -> Sequence[Any]:
        if isinstance(command, Increment):
            if command.by <= 0:
                raise CommandRejected("increment must be positive")
            return [Incremented(command.by)]
        raise CommandRejected(f"unknown command {command!r}")

    def apply(self, event: Any) -> None:
        if isinstance(event, Incremented):
            self.total += event.by
