"""The per-connection SASL state machine and the PLAIN mechanism."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.protocol.errors import ErrorCode
from riverbed.security.credentials import CredentialStore
from riverbed.security.sasl import (
    PRE_AUTH_API_KEYS,
    TRANSITIONS,
    PlainServer,
    SaslError,
    SaslServerFactory,
    SaslSession,
    SaslState,
    allowed_before_authentication,
    failure_message,
)
from riverbed.security.scram import ScramClient, ScramMechanism
from riverbed.security.throttle import FailedAuthThrottle, ThrottleConfig

PASSWORD = "hunter2-but-longer"
PRODUCE, FETCH, METADATA = 0, 1, 3
HANDSHAKE, API_VERSIONS, AUTHENTICATE = 17, 18, 36


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CredentialStore:
    store = CredentialStore(tmp_path_factory.mktemp("creds"))
    store.add_user("alice", PASSWORD)
    store.add_user("bob", "other")
    return store


@pytest.fixture
def factory(store: CredentialStore) -> SaslServerFactory:
    return SaslServerFactory(store)


def plain(authzid: str, user: str, password: str) -> bytes:
    return f"{authzid}\x00{user}\x00{password}".encode()


def scram_login(
    session: SaslSession, mechanism: ScramMechanism, user: str, password: str
) -> tuple[ErrorCode, str | None]:
    assert session.handshake(mechanism.mechanism_name)[0] == ErrorCode.NONE
    client = ScramClient(mechanism, user, password)
    first = session.authenticate(client.first_message())
    assert first.error_code == ErrorCode.NONE and not first.done
    final = session.authenticate(client.final_message(first.response))
    if final.error_code == ErrorCode.NONE:
        assert final.done
        client.verify_server_final(final.response)
    return final.error_code, final.error_message


# -- happy paths -------------------------------------------------------------------------------


def test_handshake_lists_enabled_mechanisms(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    assert session.state is SaslState.AWAITING_HANDSHAKE
    code, mechanisms = session.handshake("PLAIN")
    assert code == ErrorCode.NONE
    assert mechanisms == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert session.state is SaslState.AWAITING_AUTHENTICATE
    assert not session.raw_tokens


def test_plain_login(factory: SaslServerFactory) -> None:
    session = SaslSession(factory, client_address="10.0.0.1")
    session.handshake("PLAIN")
    result = session.authenticate(plain("", "alice", PASSWORD))
    assert result == (ErrorCode.NONE, None, b"", True)
    assert not result.close_connection
    assert session.authenticated and session.principal == "User:alice"
    assert session.admit(PRODUCE) == ErrorCode.NONE


def test_plain_authzid_equal_to_user(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    session.handshake("PLAIN")
    assert session.authenticate(plain("alice", "alice", PASSWORD)).done


@pytest.mark.parametrize("mechanism", list(ScramMechanism), ids=lambda m: m.mechanism_name)
def test_scram_login(factory: SaslServerFactory, mechanism: ScramMechanism) -> None:
    session = SaslSession(factory)
    assert scram_login(session, mechanism, "alice", PASSWORD) == (ErrorCode.NONE, None)
    assert session.principal == "User:alice"
    assert session.state is SaslState.AUTHENTICATED


def test_v0_handshake_switches_to_raw_tokens(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    assert session.handshake("SCRAM-SHA-256", version=0)[0] == ErrorCode.NONE
    assert session.raw_tokens
    client = ScramClient(ScramMechanism.SCRAM_SHA_256, "alice", PASSWORD)
    first = session.authenticate(client.first_message())
    final = session.authenticate(client.final_message(first.response))
    assert final.done and session.principal == "User:alice"


def test_raw_tokens_flag_on_construction(factory: SaslServerFactory) -> None:
    session = SaslSession(factory, raw_tokens=True)
    session.handshake("PLAIN", version=1)
    assert session.raw_tokens
    assert session.authenticate(plain("", "alice", PASSWORD)).done


def test_restricted_mechanisms(store: CredentialStore) -> None:
    factory = SaslServerFactory(store, ["SCRAM-SHA-512"])
    session = SaslSession(factory)
    code, mechanisms = session.handshake("PLAIN")  # downgrade attempt to a disabled mechanism
    assert code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert mechanisms == ["SCRAM-SHA-512"]
    assert session.failed
    with pytest.raises(ValueError):
        SaslServerFactory(store, ["GSSAPI"])
    with pytest.raises(ValueError):
        SaslServerFactory(store, [])
    with pytest.raises(SaslError):
        factory.create("PLAIN")


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        plain("", "alice", "wrong"),
        plain("", "ghost", PASSWORD),
        plain("bob", "alice", PASSWORD),  # authzid mismatch
        plain("", "", PASSWORD),
        plain("", "alice", ""),
        b"alice\x00" + PASSWORD.encode(),
        b"\x00alice\x00" + PASSWORD.encode() + b"\x00extra",
        b"\x00alice\x00\xff\xfe",
        b"",
        b"x" * 70_000,
    ],
)
def test_plain_failures_are_generic(factory: SaslServerFactory, token: bytes) -> None:
    session = SaslSession(factory, client_address="192.0.2.9")
    session.handshake("PLAIN")
    result = session.authenticate(token)
    assert result.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert result.error_message == failure_message("PLAIN")
    assert result.response == b"" and not result.done and result.close_connection
    assert session.failed and session.principal is None
    # nothing about the reason or the user leaks
    assert "alice" not in (result.error_message or "")
    assert "ghost" not in (result.error_message or "")


def test_unknown_user_and_wrong_password_are_indistinguishable(
    factory: SaslServerFactory,
) -> None:
    for mechanism in ScramMechanism:
        wrong = scram_login(SaslSession(factory), mechanism, "alice", "wrong")
        ghost = scram_login(SaslSession(factory), mechanism, "ghost", "wrong")
        assert (
            wrong
            == ghost
            == (ErrorCode.SASL_AUTHENTICATION_FAILED, failure_message(mechanism.mechanism_name))
        )


def test_failure_is_logged_with_address_not_password(
    factory: SaslServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="riverbed.security.sasl")
    session = SaslSession(factory, client_address="198.51.100.7")
    session.handshake("PLAIN")
    session.authenticate(plain("", "alice", "not-the-password"))
    text = caplog.text
    assert "198.51.100.7" in text and "Failed SASL authentication" in text
    assert "not-the-password" not in text


def test_plain_server_takes_one_token() -> None:
    server = PlainServer(lambda u, p: True)
    assert server.evaluate_response(plain("", "a", "b")) == b""
    assert server.is_complete and server.authorization_id == "a"
    with pytest.raises(SaslError):
        server.evaluate_response(plain("", "a", "b"))
    with pytest.raises(SaslError):
        _ = PlainServer(lambda u, p: True).authorization_id


def test_scram_replay_after_success_is_illegal_state(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    session.handshake("SCRAM-SHA-256")
    client = ScramClient(ScramMechanism.SCRAM_SHA_256, "alice", PASSWORD)
    first = session.authenticate(client.first_message())
    final_message = client.final_message(first.response)
    assert session.authenticate(final_message).done
    replay = session.authenticate(final_message)
    assert replay.error_code == ErrorCode.ILLEGAL_SASL_STATE and replay.close_connection
    assert session.failed and session.principal is None


def test_scram_corrupt_message_fails_authentication(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    session.handshake("SCRAM-SHA-512")
    result = session.authenticate(b"p=tls-unique,,n=alice,r=abc")
    assert result.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert result.error_message == failure_message("SCRAM-SHA-512")
    assert session.authenticate(b"n,,n=alice,r=abc").error_code == ErrorCode.ILLEGAL_SASL_STATE


def test_authenticate_before_handshake(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    result = session.authenticate(plain("", "alice", PASSWORD))
    assert result.error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert session.failed
    assert session.handshake("PLAIN")[0] == ErrorCode.ILLEGAL_SASL_STATE


def test_second_handshake_is_illegal(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    session.handshake("SCRAM-SHA-256")
    assert session.handshake("PLAIN")[0] == ErrorCode.ILLEGAL_SASL_STATE
    assert session.failed


def test_handshake_after_authentication_is_illegal(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    session.handshake("PLAIN")
    session.authenticate(plain("", "alice", PASSWORD))
    assert session.admit(HANDSHAKE) == ErrorCode.ILLEGAL_SASL_STATE
    assert session.failed and session.principal is None


@pytest.mark.parametrize("mechanism", ["plain", "GSSAPI", "SCRAM-SHA-1", "", "x" * 1000])
def test_unsupported_mechanism(factory: SaslServerFactory, mechanism: str) -> None:
    session = SaslSession(factory)
    code, mechanisms = session.handshake(mechanism)
    assert code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert mechanisms == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert session.failed


# -- which requests are admitted when ----------------------------------------------------------


def test_pre_auth_api_keys() -> None:
    assert frozenset({17, 18, 36}) == PRE_AUTH_API_KEYS
    assert allowed_before_authentication(18)
    assert not allowed_before_authentication(PRODUCE)


def test_requests_before_handshake(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    assert session.admit(API_VERSIONS) == ErrorCode.NONE
    assert session.admit(API_VERSIONS) == ErrorCode.NONE
    assert session.admit(HANDSHAKE) == ErrorCode.NONE
    assert session.admit(METADATA) == ErrorCode.ILLEGAL_SASL_STATE  # skipped authentication
    assert session.failed
    assert session.admit(API_VERSIONS) == ErrorCode.ILLEGAL_SASL_STATE


@pytest.mark.parametrize("api_key", [API_VERSIONS, HANDSHAKE, PRODUCE, FETCH])
def test_only_authenticate_during_exchange(factory: SaslServerFactory, api_key: int) -> None:
    session = SaslSession(factory)
    session.handshake("SCRAM-SHA-256")
    assert session.admit(AUTHENTICATE) == ErrorCode.NONE
    client = ScramClient(ScramMechanism.SCRAM_SHA_256, "alice", PASSWORD)
    session.authenticate(client.first_message())
    assert session.state is SaslState.AUTHENTICATING
    assert session.admit(api_key) == ErrorCode.ILLEGAL_SASL_STATE
    assert session.failed


def test_everything_but_sasl_after_authentication(factory: SaslServerFactory) -> None:
    session = SaslSession(factory)
    session.handshake("PLAIN")
    session.authenticate(plain("", "alice", PASSWORD))
    for key in (PRODUCE, FETCH, METADATA, API_VERSIONS, 60):
        assert session.admit(key) == ErrorCode.NONE
    assert session.admit(AUTHENTICATE) == ErrorCode.ILLEGAL_SASL_STATE


def test_transition_table_has_no_way_out_of_terminal_states() -> None:
    sources = {state for state, _ in TRANSITIONS}
    assert SaslState.AUTHENTICATED not in sources
    assert SaslState.FAILED not in sources
    assert set(TRANSITIONS.values()) <= set(SaslState)


# -- throttle integration ----------------------------------------------------------------------


def test_failures_feed_the_throttle(factory: SaslServerFactory) -> None:
    now = [0.0]
    throttle = FailedAuthThrottle(ThrottleConfig(failure_delay=0.1, threshold=2, base_delay=1.0), clock=lambda: now[0])
    delays = []
    for _ in range(4):
        session = SaslSession(factory, client_address="203.0.113.5", throttle=throttle)
        session.handshake("PLAIN")
        session.authenticate(plain("", "alice", "bad"))
        delays.append(session.failure_delay)
    assert delays == [0.1, 1.0, 2.0, 4.0]
    assert throttle.failures("203.0.113.5") == 4
    assert throttle.failures("198.51.100.1", "alice") == 4  # counted per user name too
    # A protocol error (not a failed login) is not counted, but waits Kafka's delay.
    session = SaslSession(factory, client_address="203.0.113.5", throttle=throttle)
    assert session.admit(PRODUCE) == ErrorCode.ILLEGAL_SASL_STATE
    assert session.failure_delay == 0.1
    assert throttle.failures("203.0.113.5") == 4
    session = SaslSession(factory, client_address="203.0.113.5", throttle=throttle)
    assert session.handshake("NOPE")[0] == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert session.failure_delay == 0.1
    # A good login from the same address is neither delayed nor counted.
    session = SaslSession(factory, client_address="203.0.113.5", throttle=throttle)
    session.handshake("PLAIN")
    assert session.authenticate(plain("", "alice", PASSWORD)).done
    assert session.failure_delay == 0.0
    assert throttle.failures("203.0.113.5") == 4


@pytest.mark.parametrize("mechanism", [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512])
def test_scram_failures_are_counted_for_the_user_they_named(factory: SaslServerFactory, mechanism: ScramMechanism) -> None:
    throttle = FailedAuthThrottle(ThrottleConfig(threshold=1, base_delay=1.0, failure_delay=0.1))
    session = SaslSession(factory, client_address="203.0.113.7", throttle=throttle)
    code, _ = scram_login(session, mechanism, "alice", "wrong")
    assert code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert session.failure_delay == 1.0
    assert throttle.failures("198.51.100.1", "alice") == 1
    session = SaslSession(factory, client_address="203.0.113.7", throttle=throttle)
    assert scram_login(session, mechanism, "alice", PASSWORD) == (ErrorCode.NONE, None)
    assert session.failure_delay == 0.0


# -- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
    st.lists(st.binary(max_size=100), min_size=1, max_size=4),
)
def test_fuzz_session_never_raises(
    store: CredentialStore, mechanism: str, tokens: list[bytes]
) -> None:
    session = SaslSession(SaslServerFactory(store))
    session.handshake(mechanism)
    for token in tokens:
        result = session.authenticate(token)
        assert result.error_code in (
            ErrorCode.NONE,
            ErrorCode.SASL_AUTHENTICATION_FAILED,
            ErrorCode.ILLEGAL_SASL_STATE,
        )
        if result.error_code != ErrorCode.NONE:
            assert result.error_message in (
                failure_message(mechanism),
                "Unexpected SASL authentication request in the current state",
            )
    assert not session.authenticated


def test_tmp_store_isolated(tmp_path: Path) -> None:
    # A fresh store with no users refuses everyone, with the same generic answer.
    session = SaslSession(SaslServerFactory(CredentialStore(tmp_path)))
    session.handshake("PLAIN")
    assert session.authenticate(plain("", "alice", PASSWORD)).error_code == (
        ErrorCode.SASL_AUTHENTICATION_FAILED
    )
