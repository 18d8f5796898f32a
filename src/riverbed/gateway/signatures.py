"""Webhook signature schemes, verified (inbound) and made (outbound), from their public docs.

- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]``; HMAC-SHA256 over ``"<t>.<body>"``
  keyed by the endpoint secret (the whole ``whsec_...`` string); any v1 may match.
- ``github``: ``X-Hub-Signature-256: sha256=<hex>``; HMAC-SHA256 over the body. No timestamp:
  replay protection relies on the ``X-GitHub-Delivery`` id.
- ``standard-webhooks`` (standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64> [v1,<base64> ...]``; HMAC-SHA256 over ``"<id>.<ts>.<body>"``
  keyed by the base64 bytes after the ``whsec_`` prefix.
- ``hmac-sha256``: a configurable header holding the hex (or base64) HMAC-SHA256 of the body,
  optionally prefixed (``sha256=``).

Verification never logs or returns the secret; errors say which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

SCHEMES = ("stripe", "github", "standard-webhooks", "hmac-sha256", "none")


class SignatureError(Exception):
    """The request's signature is missing, malformed, wrong or too old (answered 401)."""


@dataclass(frozen=True)
class Verified:
    """What a valid signature vouches for: the provider's event id (if the scheme has one in
    its headers) and the signed timestamp (unix seconds, if any)."""

    event_id: str | None = None
    timestamp: int | None = None


def _mac(key: bytes, data: bytes) -> bytes:
    # one-shot OpenSSL HMAC: a third cheaper than building an hmac.HMAC object per request
    return hmac.digest(key, data, "sha256")


def _check_age(ts: int, tolerance: float, now: float | None) -> None:
    if tolerance <= 0:
        return
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        raise SignatureError(f"timestamp {ts} is outside the tolerance of {tolerance:g} s")


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``)."""
    raw = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is 'whsec_' + base64") from None


def verify_stripe(headers: Mapping[str, str], body: bytes, secret: str, tolerance: float = 300, now: float | None = None) -> Verified:
    header = headers.get("stripe-signature")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    ts: int | None = None
    sigs: list[bytes] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            ts = int(value)
        elif name == "v1":
            try:
                sigs.append(bytes.fromhex(value))
            except ValueError:
                continue
    if ts is None:
        raise SignatureError("Stripe-Signature has no timestamp")
    if not sigs:
        raise SignatureError("Stripe-Signature has no v1 signature")
    expected = _mac(secret.encode(), b"%d." % ts + body)
    for sig in sigs:
        if hmac.compare_digest(expected, sig):
            break
    else:
        raise SignatureError("no Stripe v1 signature matches the payload")
    _check_age(ts, tolerance, now)
    return Verified(None, ts)


def sign_stripe(body: bytes, secret: str, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    return f"t={ts},v1={_mac(secret.encode(), str(ts).encode() + b'.' + body).hex()}"


def verify_github(headers: Mapping[str, str], body: bytes, secret: str) -> Verified:
    header = headers.get("x-hub-signature-256")
    if not header:
        raise SignatureError("missing X-Hub-Signature-256 header")
    algo, _, value = header.partition("=")
    if algo != "sha256":
        raise SignatureError("X-Hub-Signature-256 is not sha256=<hex>")
    try:
        given = bytes.fromhex(value)
    except ValueError:
        raise SignatureError("X-Hub-Signature-256 is not hex") from None
    if not hmac.compare_digest(_mac(secret.encode(), body), given):
        raise SignatureError("X-Hub-Signature-256 does not match the payload")
    return Verified(headers.get("x-github-delivery") or None, None)


def sign_github(body: bytes, secret: str) -> str:
    return "sha256=" + _mac(secret.encode(), body).hex()


def verify_standard(headers: Mapping[str, str], body: bytes, secret: str, tolerance: float = 300, now: float | None = None) -> Verified:
    msg_id, ts_text, header = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not msg_id or not ts_text or not header:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not ts_text.isdigit():
        raise SignatureError("webhook-timestamp is not unix seconds")
    ts = int(ts_text)
    expected = _mac(standard_key(secret), f"{msg_id}.{ts}.".encode() + body)
    for item in header.split(" "):
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            _check_age(ts, tolerance, now)
            return Verified(msg_id, ts)
    raise SignatureError("no webhook-signature v1 signature matches the payload")


def sign_standard(msg_id: str, body: bytes, secret: str, ts: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of an outbound message."""
    ts = int(time.time()) if ts is None else ts
    sig = base64.b64encode(_mac(standard_key(secret), f"{msg_id}.{ts}.".encode() + body)).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}


def verify_hmac(headers: Mapping[str, str], body: bytes, secret: str, header: str = "x-signature", prefix: str = "", encoding: str = "hex") -> Verified:
    value = headers.get(header.lower())
    if not value:
        raise SignatureError(f"missing {header} header")
    if prefix:
        if not value.startswith(prefix):
            raise SignatureError(f"{header} does not start with {prefix!r}")
        value = value[len(prefix):]
    try:
        given = base64.b64decode(value, validate=True) if encoding == "base64" else bytes.fromhex(value)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{header} is not {encoding}") from None
    if not hmac.compare_digest(_mac(secret.encode(), body), given):
        raise SignatureError(f"{header} does not match the payload")
    return Verified(None, None)


def sign_hmac(body: bytes, secret: str, prefix: str = "", encoding: str = "hex") -> str:
    mac = _mac(secret.encode(), body)
    return prefix + (base64.b64encode(mac).decode() if encoding == "base64" else mac.hex())
