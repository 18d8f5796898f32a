"""Errors of riverbed.patterns, each with a message a person can act on."""

from __future__ import annotations


class PatternsError(Exception):
    """Base class of every error raised by riverbed.patterns."""


class UnknownEventType(PatternsError):
    """An event (or command) type that no registry entry declares."""


class NoUpcastPath(PatternsError):
    """No chain of upcasters leads from a stored version to the version the code reads."""


class InvalidEnvelope(PatternsError):
    """A record is not an event envelope (not JSON, or a required field is missing)."""


class CommandRejected(PatternsError):
    """The aggregate refused the command (a business rule); nothing was appended."""


class WrongExpectedVersion(CommandRejected):
    """The command expected another aggregate version than the owner's current one."""

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(f"aggregate {aggregate_id}: expected version {expected}, current version is {actual}")
        self.expected, self.actual = expected, actual


class NotOwner(PatternsError):
    """This process does not own the aggregate's partition: send the command through the
    command topic (CommandBus) or to the owner."""

    def __init__(self, aggregate_id: str, partition: int) -> None:
        super().__init__(f"aggregate {aggregate_id} (partition {partition}) is not owned by this process")
        self.partition = partition


class Fenced(PatternsError):
    """A newer owner of the partition took over (its transactional id fenced ours); the
    partition is dropped and the command was not appended."""
