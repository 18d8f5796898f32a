"""Claim-check references that are not what they claim (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverbed.messaging.claimcheck import HEADER, ClaimCheck, ClaimCheckError, DirectoryStore


@pytest.mark.parametrize("value", [None, b"", b"{", b"[1]", b'{"url": 1}', b'{"url":"file:///x","size":"big","sha256":"0"}', b"[" * 100_000 + b"]" * 100_000])
def test_malformed_references_raise_claim_check_error(value: bytes | None, tmp_path: Path) -> None:
    with pytest.raises(ClaimCheckError):
        ClaimCheck(DirectoryStore(tmp_path)).unwrap(value, [(HEADER, b"sha256")])


def test_small_values_pass_through(tmp_path: Path) -> None:
    claim = ClaimCheck(DirectoryStore(tmp_path), threshold=10)
    assert claim.wrap(b"tiny", [("a", b"1"), (HEADER, b"forged")]) == (b"tiny", [("a", b"1")])
    assert claim.unwrap(b"tiny", [("a", b"1")]) == b"tiny"
    assert not list(tmp_path.iterdir())  # nothing stored
