from __future__ import annotations

import secrets
from pathlib import Path

from riverbed.security.credentials import CredentialStore, LoginCredentials
from riverbed.security.scram import ScramFormatter, ScramMechanism


def test_plain_checks_the_scram_credential_when_no_plain_hash(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    salt = secrets.token_bytes(32)
    salted = ScramFormatter(ScramMechanism.SCRAM_SHA_256).salted_password("pw", salt, 4096)
    store.upsert_scram("u256", ScramMechanism.SCRAM_SHA_256, salt=salt, salted_password=salted)
    store.upsert_scram("u512", ScramMechanism.SCRAM_SHA_512, "pw512")
    login = LoginCredentials(store)
    assert login.verify_plain("u256", "pw")
    assert not login.verify_plain("u256", "PW")
    assert login.verify_plain("u512", "pw512")
    assert not login.verify_plain("nobody", "pw")
    assert login.decoy_key == store.decoy_key
    assert login.lookup("u512", "SCRAM-SHA-512") is not None


def test_plain_hash_wins_when_present(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.upsert_scram("u", ScramMechanism.SCRAM_SHA_512, "scram-pw")
    store.set_plain("u", "plain-pw")
    login = LoginCredentials(store)
    assert login.verify_plain("u", "plain-pw")
    assert not login.verify_plain("u", "scram-pw")
