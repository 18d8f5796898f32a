"""The lecture's bank account, event-sourced on the log, in one command:

    .venv/bin/python examples/bank-account/run.py                         # starts its own broker
    .venv/bin/python examples/bank-account/run.py --bootstrap 127.0.0.1:9092

Yesterday's events bring account acc-1001 to $20,000.00; the nightly job snapshots it into a
compacted topic. Today brings five transactions. A "reboot" (a fresh repository) then loads the
account from the snapshot and replays only today's five events, and time travel shows the
balance as of last night. Two tellers race on the same version: only one withdrawal appends.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from riverbed.client import ClusterSettings
from riverbed.patterns import (
    Aggregate,
    AggregateOwner,
    CommandRejected,
    EventStore,
    KafkaSnapshotStore,
    Repository,
    TypeRegistry,
)

types = TypeRegistry()


@types.command("Open")
@dataclass(frozen=True)
class Open:
    owner: str


@types.command("Deposit")
@dataclass(frozen=True)
class Deposit:
    cents: int
    memo: str = ""


@types.command("Withdraw")
@dataclass(frozen=True)
class Withdraw:
    cents: int
    memo: str = ""


@types.event("AccountOpened")
@dataclass(frozen=True)
class AccountOpened:
    owner: str


@types.event("Deposited")
@dataclass(frozen=True)
class Deposited:
    cents: int
    memo: str


@types.event("Withdrawn")
@dataclass(frozen=True)
class Withdrawn:
    cents: int
    memo: str


@dataclass
class Account(Aggregate):
    aggregate_type = "account"
    owner: str = ""
    balance_cents: int = 0

    def decide(self, command: Any) -> Sequence[Any]:
        if isinstance(command, Open):
            if self.version:
                raise CommandRejected("account already open")
            return [AccountOpened(command.owner)]
        if not self.version:
            raise CommandRejected("no such account")
        if isinstance(command, Deposit):
            return [Deposited(command.cents, command.memo)]
        if isinstance(command, Withdraw):
            if command.cents > self.balance_cents:
                raise CommandRejected(f"insufficient funds: balance {money(self.balance_cents)}, asked {money(command.cents)}")
            return [Withdrawn(command.cents, command.memo)]
        raise CommandRejected(f"unknown command {command!r}")

    def apply(self, event: Any) -> None:
        if isinstance(event, AccountOpened):
            self.owner = event.owner
        elif isinstance(event, Deposited):
            self.balance_cents += event.cents
        elif isinstance(event, Withdrawn):
            self.balance_cents -= event.cents


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def run(bootstrap: str) -> None:
    settings = ClusterSettings(bootstrap=bootstrap)
    store = EventStore(settings, "account", partitions=3, prefix="bank.")
    store.ensure_topics()
    snapshots = KafkaSnapshotStore(settings, "bank.account.snapshots")
    owner = AggregateOwner(store, Account, types, "bank", source="bank/core", snapshots=snapshots)
    owner.wait_owned()
    acc = "acc-1001"
    # yesterday
    owner.execute(acc, Open("Ada Lovelace")).raise_for_status()
    for n in range(8):
        owner.execute(acc, Deposit(250_000, f"salary {n + 1}")).raise_for_status()
    owner.execute(acc, Withdraw(30_000, "deposit on a flat")).raise_for_status()
    owner.execute(acc, Deposit(30_000, "deposit returned")).raise_for_status()
    night = owner.aggregate(acc)
    print(f"yesterday: {night.version} events, balance {money(night.balance_cents)}")
    owner.take_snapshots()  # the nightly job
    snap = snapshots.get("account", acc)
    assert snap is not None
    print(f"nightly snapshot: {acc} at version {snap.version}")
    time.sleep(0.01)
    last_night = datetime.now(UTC)
    # today's five transactions
    for cmd in (Withdraw(4_550, "groceries"), Deposit(120_000, "tax refund"), Withdraw(80_000, "rent"), Withdraw(1_999, "books"), Deposit(25_000, "sold a bike")):
        r = owner.execute(acc, cmd).raise_for_status()
        print(f"today: {type(cmd).__name__.lower()} {money(cmd.cents)} ({cmd.memo}) -> version {r.version}")
    r = owner.execute(acc, Withdraw(5_000_000, "a yacht"))
    print(f"today: withdraw {money(5_000_000)} refused: {r.reason}")
    # two tellers read version 16 and both withdraw: the owner appends one, refuses the other
    v = owner.aggregate(acc).version
    first = owner.execute(acc, Withdraw(10_000, "teller 1"), expected_version=v)
    second = owner.execute(acc, Withdraw(10_000, "teller 2"), expected_version=v)
    print(f"tellers at version {v}: teller 1 {'accepted' if first.accepted else 'refused'}, teller 2 {'accepted' if second.accepted else 'refused'} ({second.reason})")
    owner.close()

    # a reboot of the write side: the new owner starts from last night's checkpoint
    rebooted = AggregateOwner(store, Account, types, "bank", source="bank/core", snapshots=snapshots)
    rebooted.wait_owned()
    p = store.partition_for(acc)
    print(f"owner reboot: partition {p} restored from the nightly checkpoint, {rebooted.restored[p][1]} events replayed; balance {money(rebooted.aggregate(acc).balance_cents)}")
    rebooted.close()

    # a reboot of the read side: a fresh repository loads from the snapshot and replays only the later events
    repo = Repository(store, Account, types, snapshots=snapshots)
    now = repo.load(acc)
    print(f"after reboot: {acc} at version {now.version}, balance {money(now.balance_cents)}: snapshot at version {snap.version} + {repo.last_replayed} events replayed")
    full = repo.load(acc, use_snapshot=False)
    print(f"without the snapshot: {repo.last_replayed} events replayed, balance {money(full.balance_cents)}")
    print(f"time travel: as of last night {money(repo.load(acc, as_of_time=last_night).balance_cents)}; as of version 13 {money(repo.load(acc, as_of_version=13).balance_cents)}")
    repo.close()
    snapshots.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="an existing cluster (default: start a riverbed broker)")
    args = ap.parse_args(argv)
    from riverbed.testing import example_cluster

    with example_cluster(args.bootstrap, "bank-account") as bootstrap:
        run(bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
