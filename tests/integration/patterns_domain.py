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


class CounterTable:
    """PostgreSQL read model of counters: total and number of events applied."""

    def setup(self, cur: Any, schema: str) -> None:
        cur.execute(f"CREATE TABLE {schema}.counters (id TEXT PRIMARY KEY, total BIGINT NOT NULL, events INTEGER NOT NULL)")

    def apply(self, cur: Any, schema: str, event: Any) -> None:
        cur.execute(f"INSERT INTO {schema}.counters VALUES (%s, %s, 1) ON CONFLICT (id) DO UPDATE SET total = counters.total + EXCLUDED.total, events = counters.events + 1",
                    (event.aggregate_id, int(event.data["by"])))


class CounterDoc:
    """Redis read model of counters."""

    def apply(self, doc: dict[str, str], event: Any) -> dict[str, str] | None:
        return {"total": str(int(doc.get("total", 0)) + int(event.data["by"])), "events": str(int(doc.get("events", 0)) + 1)}
