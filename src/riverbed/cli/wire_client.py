"""The CLI's blocking Kafka client for the admin commands that confluent-kafka's AdminClient
does not offer (DescribeTransactions, ListTransactions, DescribeProducers, ...):
``riverbed.client.wire.WireClient`` with its failures as the CLI's :class:`CommandError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from riverbed.client import wire
from riverbed.protocol.primitives import Message

from .client_commands import CommandError


class WireClient(wire.WireClient):
    """``security`` takes librdkafka's client settings (see ``riverbed.client.wire``)."""

    def __init__(self, bootstrap: str, timeout: float = 30.0, client_id: str = "riverbed-cli", security: Mapping[str, Any] | None = None) -> None:
        try:
            super().__init__(bootstrap, security, timeout, client_id)
        except wire.WireError as exc:
            raise CommandError(str(exc)) from exc

    def request(self, msg: Message, max_version: int) -> Message:
        try:
            return super().request(msg, max_version)
        except wire.WireError as exc:
            raise CommandError(str(exc)) from exc

    def request_extension(self, msg: Message, response: type[Message] | None = None) -> Message:
        try:
            return super().request_extension(msg, response)
        except wire.WireError as exc:
            raise CommandError(str(exc)) from exc
