"""Signature schemes against the vectors their providers publish, and round trips."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.gateway.signatures import (
    SignatureError,
    sign_github,
    sign_hmac,
    sign_standard,
    sign_stripe,
    verify_github,
    verify_hmac,
    verify_standard,
    verify_stripe,
)

STD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_github_documented_vector() -> None:
    # docs.github.com, "Validating webhook deliveries": the test values it gives
    sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign_github(b"Hello, World!", "It's a Secret to Everybody") == sig
    v = verify_github({"x-hub-signature-256": sig, "x-github-delivery": "d-1"}, b"Hello, World!", "It's a Secret to Everybody")
    assert v.event_id == "d-1"
    with pytest.raises(SignatureError):
        verify_github({"x-hub-signature-256": sig}, b"Hello, World?", "It's a Secret to Everybody")


def test_standard_webhooks_documented_vector() -> None:
    # the Standard Webhooks specification's example message
    body = b'{"test": 2432232314}'
    headers = sign_standard("msg_p5jXN8AQM9LWM0D4loKWxJek", body, STD_SECRET, 1614265330)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    v = verify_standard(headers, body, STD_SECRET, tolerance=300, now=1614265330 + 10)
    assert (v.event_id, v.timestamp) == ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_standard(headers, body, STD_SECRET, tolerance=300, now=1614265330 + 301)
    # several signatures (key rotation): any v1 may match
    rotated = {**headers, "webhook-signature": "v1,AAAA v1a,zzz " + headers["webhook-signature"]}
    assert verify_standard(rotated, body, STD_SECRET, now=1614265330).event_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"


def test_stripe_header_shape_and_tolerance() -> None:
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    header = sign_stripe(body, "whsec_abc", now)
    t, v1 = header.split(",")
    assert t == f"t={now}" and v1.startswith("v1=") and len(v1) == 3 + 64
    assert verify_stripe({"stripe-signature": header}, body, "whsec_abc").timestamp == now
    # extra schemes and a second v1 (secret rolling) are accepted
    assert verify_stripe({"stripe-signature": f"{t},v0=ffff,v1={'0' * 64},{v1}"}, body, "whsec_abc")
    with pytest.raises(SignatureError, match="tolerance"):
        verify_stripe({"stripe-signature": sign_stripe(body, "whsec_abc", now - 301)}, body, "whsec_abc", tolerance=300)
    for bad in ("", "v1=00", f"t={now}", f"t={now},v1=zz"):
        with pytest.raises(SignatureError):
            verify_stripe({"stripe-signature": bad}, body, "whsec_abc")
    with pytest.raises(SignatureError):
        verify_stripe({"stripe-signature": header}, body, "whsec_other")


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=200), secret=st.text(min_size=1, max_size=30), flip=st.integers(min_value=0, max_value=199))
def test_round_trips_and_any_changed_byte_fails(body: bytes, secret: str, flip: int) -> None:
    headers = {"stripe-signature": sign_stripe(body, secret), "x-hub-signature-256": sign_github(body, secret), "x-sig": sign_hmac(body, secret, "sha256=", "base64")}
    std = sign_standard("msg_1", body, STD_SECRET)
    verify_stripe(headers, body, secret)
    verify_github(headers, body, secret)
    verify_hmac(headers, body, secret, "X-Sig", "sha256=", "base64")
    verify_standard(std, body, STD_SECRET)
    if body:
        changed = bytearray(body)
        changed[flip % len(body)] ^= 1
        for check in (
            lambda: verify_stripe(headers, bytes(changed), secret),
            lambda: verify_github(headers, bytes(changed), secret),
            lambda: verify_hmac(headers, bytes(changed), secret, "X-Sig", "sha256=", "base64"),
            lambda: verify_standard(std, bytes(changed), STD_SECRET),
        ):
            with pytest.raises(SignatureError):
                check()
