"""The credential store: persistence, hashing only, corruption, AlterUserScramCredentials rules."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from riverbed.protocol.errors import ErrorCode
from riverbed.security.credentials import (
    FILE_NAME,
    CorruptCredentialStoreError,
    CredentialError,
    CredentialStore,
    ScramDeletion,
    ScramUpsertion,
    plan_alterations,
)
from riverbed.security.scram import (
    ScramClient,
    ScramFormatter,
    ScramMechanism,
    ScramSaslServer,
)

SHA256 = ScramMechanism.SCRAM_SHA_256
SHA512 = ScramMechanism.SCRAM_SHA_512
PASSWORD = "correct-horse-battery-staple"


def login(store: CredentialStore, mechanism: ScramMechanism, user: str, password: str) -> bool:
    server = ScramSaslServer(
        mechanism, lambda u: store.lookup(u, mechanism), decoy_key=store.decoy_key
    )
    client = ScramClient(mechanism, user, password)
    first = server.evaluate_response(client.first_message())
    try:
        server.evaluate_response(client.final_message(first))
    except Exception:
        return False
    return server.is_complete


def test_upsert_lookup_and_login(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.upsert_scram("alice", "SCRAM-SHA-256", PASSWORD, iterations=4096)
    cred = store.lookup("alice", SHA256)
    assert cred is not None and cred.iterations == 4096 and len(cred.salt) == 32
    assert store.lookup("alice", SHA512) is None
    assert store.lookup("bob", SHA256) is None
    assert login(store, SHA256, "alice", PASSWORD)
    assert not login(store, SHA256, "alice", "nope")


def test_upsert_from_salted_password_as_alter_sends_it(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    salt = b"0123456789abcdef"
    salted = ScramFormatter(SHA512).salted_password(PASSWORD, salt, 8192)
    store.upsert_scram("bob", SHA512, salt=salt, iterations=8192, salted_password=salted)
    assert login(store, SHA512, "bob", PASSWORD)
    assert store.describe() == {"bob": [("SCRAM-SHA-512", 8192)]}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"password": PASSWORD, "iterations": 4095}, ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ({"password": PASSWORD, "iterations": 16385}, ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ({"password": ""}, ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ({}, ErrorCode.UNACCEPTABLE_CREDENTIAL),
        (
            {"password": "x", "salted_password": b"x" * 32, "salt": b"s"},
            ErrorCode.UNACCEPTABLE_CREDENTIAL,
        ),
        ({"salted_password": b"x" * 32}, ErrorCode.UNACCEPTABLE_CREDENTIAL),
        ({"salted_password": b"x" * 32, "salt": b""}, ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ],
)
def test_upsert_validation(tmp_path: Path, kwargs: dict[str, object], code: ErrorCode) -> None:
    store = CredentialStore(tmp_path)
    with pytest.raises(CredentialError) as info:
        store.upsert_scram("alice", SHA256, **kwargs)  # type: ignore[arg-type]
    assert info.value.error_code == code
    assert not (tmp_path / FILE_NAME).exists()


def test_bad_user_names_and_mechanisms(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    with pytest.raises(CredentialError):
        store.upsert_scram("", SHA256, PASSWORD)
    with pytest.raises(CredentialError):
        store.set_plain("a\x00b", PASSWORD)
    with pytest.raises(CredentialError) as info:
        store.upsert_scram("alice", "SCRAM-SHA-1", PASSWORD)
    assert info.value.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM


def test_plain_is_hashed_and_verified(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.set_plain("alice", PASSWORD)
    assert store.verify_plain("alice", PASSWORD)
    assert not store.verify_plain("alice", PASSWORD + "x")
    assert not store.verify_plain("alice", "")
    assert not store.verify_plain("ghost", PASSWORD)
    doc = json.loads((tmp_path / FILE_NAME).read_text())
    entry = doc["users"]["alice"]["PLAIN"]
    assert entry["algorithm"] == "PBKDF2-HMAC-SHA512"
    assert entry["iterations"] >= 4096
    assert set(entry) == {"algorithm", "salt", "iterations", "hash"}


def test_no_password_bytes_on_disk(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.add_user("alice", PASSWORD)
    salt = b"abcdefgh"
    salted = ScramFormatter(SHA256).salted_password("other-secret-pw", salt, 4096)
    store.upsert_scram("bob", SHA256, salt=salt, salted_password=salted, iterations=4096)
    raw = (tmp_path / FILE_NAME).read_bytes()
    for secret in (PASSWORD.encode(), b"other-secret-pw"):
        assert secret not in raw
        assert base64.b64encode(secret) not in raw
        assert secret.hex().encode() not in raw
    # The salted password (which would let anyone log in) is not kept either.
    assert base64.b64encode(salted) not in raw
    assert salted.hex().encode() not in raw
    assert list(tmp_path.iterdir()) == [tmp_path / FILE_NAME]  # no temporary files left


def test_file_mode_is_0600(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.set_plain("alice", PASSWORD)
    mode = stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode)
    assert mode == 0o600


def test_persistence_and_reload(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.add_user("alice", PASSWORD, iterations=8192)
    store.upsert_scram("bob", SHA512, "pw2")
    reloaded = CredentialStore(tmp_path)
    assert reloaded.users() == ["alice", "bob"]
    assert reloaded.mechanisms("alice") == ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
    assert reloaded.lookup("alice", SHA256) == store.lookup("alice", SHA256)
    assert reloaded.decoy_key == store.decoy_key
    assert reloaded.verify_plain("alice", PASSWORD)
    assert login(reloaded, SHA512, "bob", "pw2")
    assert reloaded.describe() == {
        "alice": [("SCRAM-SHA-256", 8192), ("SCRAM-SHA-512", 8192)],
        "bob": [("SCRAM-SHA-512", 4096)],
    }
    assert reloaded.describe(["bob", "nobody"]) == {"bob": [("SCRAM-SHA-512", 4096)]}


def test_delete(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.add_user("alice", PASSWORD)
    store.delete("alice", "SCRAM-SHA-256")
    store.delete("alice", "PLAIN")
    assert CredentialStore(tmp_path).mechanisms("alice") == ["SCRAM-SHA-512"]
    for mech in ("SCRAM-SHA-256", "PLAIN"):
        with pytest.raises(CredentialError) as info:
            store.delete("alice", mech)
        assert info.value.error_code == ErrorCode.RESOURCE_NOT_FOUND
    assert store.delete_user("alice")
    assert not store.delete_user("alice")
    assert CredentialStore(tmp_path).users() == []


def test_missing_file_is_an_empty_store(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "new")
    assert store.users() == []
    store.set_plain("a", "b")
    assert (tmp_path / "new" / FILE_NAME).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"format": 2, "decoy_key": "", "users": {}}',
        b'{"format": 1, "users": {}}',
        b'{"format": 1, "decoy_key": "!!", "users": {}}',
        b'{"format": 1, "decoy_key": "", "users": {}}',
        b'{"format": 1, "decoy_key": "AAAAAAAAAAAAAAAAAAAAAA==", "users": []}',
        b'{"format": 1, "decoy_key": "AAAAAAAAAAAAAAAAAAAAAA==", "users": {"a": {"SCRAM-SHA-1": {"iterations": 4096}}}}',
        b'{"format": 1, "decoy_key": "AAAAAAAAAAAAAAAAAAAAAA==", "users": {"a": {"PLAIN": {"iterations": 10}}}}',
        b'{"format": 1, "decoy_key": "AAAAAAAAAAAAAAAAAAAAAA==", "users": {"a": {"PLAIN": {"iterations": "x"}}}}',
        b'{"format": 1, "decoy_key": "AAAAAAAAAAAAAAAAAAAAAA==", "users": {"a": {"SCRAM-SHA-256": {"iterations": 4096,'
        b' "salt": "AA==", "stored_key": 1, "server_key": "AA=="}}}}',
        b"\xff\xfe",
    ],
)
def test_corrupt_file_raises_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    with pytest.raises(CorruptCredentialStoreError, match="corrupt"):
        CredentialStore(tmp_path)
    assert (tmp_path / FILE_NAME).read_bytes() == content  # left alone


def test_truncated_real_file_is_refused(tmp_path: Path) -> None:
    CredentialStore(tmp_path).add_user("alice", PASSWORD)
    path = tmp_path / FILE_NAME
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptCredentialStoreError):
        CredentialStore(tmp_path)


# -- AlterUserScramCredentials -----------------------------------------------------------------


def up(name: str, mech: int = 1, iterations: int = 4096, salt: bytes = b"salt") -> ScramUpsertion:
    salted = b"\x01" * (32 if mech == 1 else 64)
    return ScramUpsertion(name, mech, iterations, salt, salted)


def codes(results: list) -> dict[str, ErrorCode]:  # type: ignore[type-arg]
    return {r.user: r.error_code for r in results}


def test_apply_alterations_validation(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.upsert_scram("existing", SHA256, PASSWORD)
    results = store.apply_alterations(
        deletions=[
            ScramDeletion("existing", 1),
            ScramDeletion("missing", 1),
            ScramDeletion("dup", 2),
        ],
        upsertions=[
            up("ok"),
            up("ok", mech=2, iterations=16384),
            up("few", iterations=4095),
            up("many", iterations=16385),
            up("badmech", mech=0),
            up("badmech3", mech=3),
            up("dup", mech=2),
            up("", mech=1),
            up("nosalt", salt=b""),
        ],
    )
    assert [r.user for r in results] == [
        "existing",
        "missing",
        "dup",
        "ok",
        "few",
        "many",
        "badmech",
        "badmech3",
        "",
        "nosalt",
    ]
    assert codes(results) == {
        "existing": ErrorCode.NONE,
        "missing": ErrorCode.RESOURCE_NOT_FOUND,
        "dup": ErrorCode.DUPLICATE_RESOURCE,
        "ok": ErrorCode.NONE,
        "few": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "many": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "badmech": ErrorCode.UNSUPPORTED_SASL_MECHANISM,
        "badmech3": ErrorCode.UNSUPPORTED_SASL_MECHANISM,
        "": ErrorCode.UNACCEPTABLE_CREDENTIAL,
        "nosalt": ErrorCode.UNACCEPTABLE_CREDENTIAL,
    }
    messages = {r.user: r.error_message for r in results}
    assert messages["few"] == "Too few iterations"
    assert messages["many"] == "Too many iterations"
    assert messages["ok"] is None
    reloaded = CredentialStore(tmp_path)
    assert reloaded.describe() == {"ok": [("SCRAM-SHA-256", 4096), ("SCRAM-SHA-512", 16384)]}


def test_alterations_for_a_user_apply_all_or_nothing(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    results = store.apply_alterations([], [up("carol", mech=1), up("carol", mech=2, iterations=1)])
    assert codes(results) == {"carol": ErrorCode.UNACCEPTABLE_CREDENTIAL}
    assert store.describe() == {}
    assert not (tmp_path / FILE_NAME).exists()  # nothing to write


def test_upsert_and_delete_same_pair_is_duplicate(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.upsert_scram("dave", SHA256, PASSWORD)
    results = store.apply_alterations([ScramDeletion("dave", 1)], [up("dave", mech=1)])
    assert codes(results) == {"dave": ErrorCode.DUPLICATE_RESOURCE}
    assert store.describe() == {"dave": [("SCRAM-SHA-256", 4096)]}


def test_alter_then_login_with_client_computed_salted_password(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    salt = os.urandom(16)
    salted = ScramFormatter(SHA256).salted_password("pw", salt, 4096)
    results = store.apply_alterations([], [ScramUpsertion("erin", 1, 4096, salt, salted)])
    assert codes(results) == {"erin": ErrorCode.NONE}
    assert login(CredentialStore(tmp_path), SHA256, "erin", "pw")


def test_plan_alterations_is_pure() -> None:
    plan = plan_alterations({"x": [SHA256]}, [ScramDeletion("x", 1)], [up("y")])
    assert plan.deletions == [("x", SHA256)]
    assert [(u, m) for u, m, _ in plan.upsertions] == [("y", SHA256)]
    assert codes(plan.results) == {"x": ErrorCode.NONE, "y": ErrorCode.NONE}


def test_describe_request(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.upsert_scram("alice", SHA256, PASSWORD)
    store.upsert_scram("alice", SHA512, PASSWORD, iterations=8192)
    store.set_plain("plainonly", PASSWORD)
    results = store.describe_request(["alice", "ghost", "plainonly", "alice2", "alice2"])
    by_user = {r.user: r for r in results}
    assert by_user["alice"].error_code == ErrorCode.NONE
    assert by_user["alice"].credentials == ((1, 4096), (2, 8192))
    assert by_user["ghost"].error_code == ErrorCode.RESOURCE_NOT_FOUND
    assert by_user["plainonly"].error_code == ErrorCode.RESOURCE_NOT_FOUND
    assert by_user["alice2"].error_code == ErrorCode.DUPLICATE_RESOURCE
    assert [r.user for r in store.describe_request(None)] == ["alice"]
