"""`riverbed topic describe` prints topic ids as Kafka's tools do: Uuid.toString() is URL-safe
base64 without padding (java.util.Base64.getUrlEncoder().withoutPadding())."""

from __future__ import annotations

import base64
import uuid

from confluent_kafka import Uuid

from riverbed.cli.client_commands import _kafka_uuid


def _signed(n: int) -> int:
    return n - 2**64 if n >= 2**63 else n


def test_ids_with_plus_and_slash_in_standard_base64() -> None:
    raw = bytes([0xFB, 0xEF, 0xFF] * 5 + [0xFE])  # standard base64: "++//..." characters
    u = uuid.UUID(bytes=raw)
    cid = Uuid(_signed(u.int >> 64), _signed(u.int & (2**64 - 1)))
    assert "+" in base64.b64encode(raw).decode() or "/" in base64.b64encode(raw).decode()
    text = _kafka_uuid(cid)
    assert text == base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "+" not in text and "/" not in text and len(text) == 22
