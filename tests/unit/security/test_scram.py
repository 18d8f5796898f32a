"""SCRAM-SHA-256/512 server: RFC vectors, full exchanges, and every way a client can go wrong."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.security.scram import (
    ClientFinalMessage,
    ClientFirstMessage,
    ScramClient,
    ScramCredential,
    ScramError,
    ScramFormatter,
    ScramMechanism,
    ScramSaslServer,
    ServerFirstMessage,
    decode_saslname,
    encode_saslname,
)

SHA256 = ScramMechanism.SCRAM_SHA_256
SHA512 = ScramMechanism.SCRAM_SHA_512
BOTH = pytest.mark.parametrize("mechanism", [SHA256, SHA512], ids=lambda m: m.mechanism_name)
DECOY = b"d" * 32

# RFC 7677 section 3
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def make_server(
    mechanism: ScramMechanism,
    users: dict[str, str],
    *,
    iterations: int = 4096,
    nonce: str | None = None,
) -> ScramSaslServer:
    formatter = ScramFormatter(mechanism)
    creds = {
        user: formatter.credential(pw, hashlib.sha256(user.encode()).digest(), iterations)
        for user, pw in users.items()
    }
    kwargs = {} if nonce is None else {"nonce_factory": lambda: nonce}
    return ScramSaslServer(mechanism, creds.get, decoy_key=DECOY, **kwargs)  # type: ignore[arg-type]


def exchange(server: ScramSaslServer, client: ScramClient) -> None:
    server_first = server.evaluate_response(client.first_message())
    server_final = server.evaluate_response(client.final_message(server_first))
    client.verify_server_final(server_final)


# -- RFC 7677 vector ---------------------------------------------------------------------------


def rfc_server() -> ScramSaslServer:
    cred = ScramFormatter(SHA256).credential("pencil", RFC_SALT, 4096)
    return ScramSaslServer(
        SHA256, {"user": cred}.get, decoy_key=DECOY, nonce_factory=lambda: RFC_SERVER_NONCE
    )


def test_rfc7677_vector_server() -> None:
    server = rfc_server()
    assert server.evaluate_response(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert not server.is_complete
    assert server.evaluate_response(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.is_complete
    assert server.authorization_id == "user"


def test_rfc7677_vector_client() -> None:
    client = ScramClient(SHA256, "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.first_message() == RFC_CLIENT_FIRST
    assert client.final_message(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify_server_final(RFC_SERVER_FINAL)
    with pytest.raises(ScramError):
        client.verify_server_final(b"v=" + base64.b64encode(b"\x00" * 32))


def test_rfc5802_key_derivation_matches_pbkdf2() -> None:
    formatter = ScramFormatter(SHA512)
    salted = formatter.salted_password("pencil", b"salt", 4096)
    assert salted == hashlib.pbkdf2_hmac("sha512", b"pencil", b"salt", 4096)
    assert len(salted) == 64
    cred = formatter.credential("pencil", b"salt", 4096)
    assert cred.stored_key == hashlib.sha512(formatter.client_key(salted)).digest()


# -- full exchanges ----------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("user", ["alice", "a,b=c", "日本語", "x=2C"])
def test_full_exchange(mechanism: ScramMechanism, user: str) -> None:
    server = make_server(mechanism, {user: "s3cret"})
    exchange(server, ScramClient(mechanism, user, "s3cret"))
    assert server.is_complete and server.authorization_id == user


@BOTH
def test_authzid_equal_to_user_is_accepted(mechanism: ScramMechanism) -> None:
    server = make_server(mechanism, {"alice": "pw"})
    exchange(server, ScramClient(mechanism, "alice", "pw", authzid="alice"))
    assert server.authorization_id == "alice"


@BOTH
def test_authzid_different_from_user_is_refused(mechanism: ScramMechanism) -> None:
    server = make_server(mechanism, {"alice": "pw", "admin": "x"})
    with pytest.raises(ScramError):
        server.evaluate_response(
            ScramClient(mechanism, "alice", "pw", authzid="admin").first_message()
        )


@BOTH
def test_wrong_password(mechanism: ScramMechanism) -> None:
    server = make_server(mechanism, {"alice": "pw"})
    client = ScramClient(mechanism, "alice", "wrong")
    first = server.evaluate_response(client.first_message())
    with pytest.raises(ScramError, match="invalid client proof"):
        server.evaluate_response(client.final_message(first))
    assert not server.is_complete
    with pytest.raises(ScramError):
        _ = server.authorization_id


@BOTH
def test_unknown_user_looks_like_wrong_password(mechanism: ScramMechanism) -> None:
    def attempt(user: str) -> tuple[ServerFirstMessage, str]:
        server = make_server(mechanism, {"alice": "pw"}, nonce="SERVERNONCE")
        client = ScramClient(mechanism, user, "guess", nonce="CLIENTNONCE")
        first = server.evaluate_response(client.first_message())
        with pytest.raises(ScramError) as info:
            server.evaluate_response(client.final_message(first))
        return ServerFirstMessage.parse(first), str(info.value)

    known, known_error = attempt("alice")
    ghost, ghost_error = attempt("mallory")
    assert known_error == ghost_error
    assert ghost.iterations == known.iterations == 4096
    assert len(ghost.salt) == len(known.salt) == 32
    # Deterministic per name: asking twice gives the same fake salt, another name another one.
    assert attempt("mallory")[0].salt == ghost.salt
    assert attempt("trudy")[0].salt != ghost.salt


def test_decoy_salt_depends_on_secret() -> None:
    def salt(key: bytes) -> bytes:
        server = ScramSaslServer(SHA256, lambda u: None, decoy_key=key)
        return ServerFirstMessage.parse(server.evaluate_response(b"n,,n=bob,r=abc")).salt

    assert salt(b"a" * 32) == salt(b"a" * 32)
    assert salt(b"a" * 32) != salt(b"b" * 32)


def test_proof_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    server = rfc_server()
    server.evaluate_response(RFC_CLIENT_FIRST)
    server.evaluate_response(RFC_CLIENT_FINAL)
    stored_key = ScramFormatter(SHA256).credential("pencil", RFC_SALT, 4096).stored_key
    assert any(b == stored_key for _, b in calls)


# -- protocol violations -----------------------------------------------------------------------


def started(nonce: str = "SNONCE") -> tuple[ScramSaslServer, ScramClient, bytes]:
    server = make_server(SHA256, {"alice": "pw"}, nonce=nonce)
    client = ScramClient(SHA256, "alice", "pw", nonce="CNONCE")
    first = server.evaluate_response(client.first_message())
    return server, client, first


def test_replayed_client_final_is_refused() -> None:
    server, client, first = started()
    final = client.final_message(first)
    server.evaluate_response(final)
    assert server.is_complete
    with pytest.raises(ScramError):
        server.evaluate_response(final)


def test_messages_after_failure_are_refused() -> None:
    server, client, first = started()
    with pytest.raises(ScramError):
        server.evaluate_response(b"garbage")
    with pytest.raises(ScramError):
        server.evaluate_response(client.final_message(first))


def test_client_first_twice_is_refused() -> None:
    server, client, _ = started()
    with pytest.raises(ScramError):
        server.evaluate_response(client.first_message())


def test_final_replayed_into_a_new_exchange_is_refused() -> None:
    # A client-final captured from one exchange does not work against a fresh server nonce.
    server, client, first = started(nonce="NONCE1")
    final = client.final_message(first)
    server.evaluate_response(final)
    other = make_server(SHA256, {"alice": "pw"}, nonce="NONCE2")
    other.evaluate_response(client.first_message())
    with pytest.raises(ScramError, match="nonce"):
        other.evaluate_response(final)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda n: n + "x",  # longer
        lambda n: n[:-1],  # prefix only
        lambda n: "CNONCE",  # client nonce alone
        lambda n: n.swapcase(),
    ],
)
def test_nonce_must_match_exactly(mutate: object) -> None:
    server, client, first = started()
    final = client.final_message(first).decode()
    nonce = ServerFirstMessage.parse(first).nonce
    bad = final.replace(f"r={nonce}", f"r={mutate(nonce)}")  # type: ignore[operator]
    with pytest.raises(ScramError):
        server.evaluate_response(bad.encode())


@pytest.mark.parametrize(
    "binding", [b"c=eSws", b"c=cCx0bHMtdW5pcXVlLCw=", b"c=", b"c=biwsAA==", b"c=bi=="]
)
def test_channel_binding_must_match_gs2_header(binding: bytes) -> None:
    server, client, first = started()
    final = client.final_message(first)
    with pytest.raises(ScramError):
        server.evaluate_response(final.replace(b"c=biws", binding, 1))


def test_corrupted_proof_is_refused() -> None:
    server, client, first = started()
    final = client.final_message(first).decode()
    head, proof = final.rsplit(",p=", 1)
    raw = bytearray(base64.b64decode(proof))
    raw[0] ^= 1
    with pytest.raises(ScramError, match="invalid client proof"):
        server.evaluate_response(f"{head},p={base64.b64encode(raw).decode()}".encode())


@pytest.mark.parametrize("proof", ["", "AAAA", base64.b64encode(b"x" * 31).decode(), "!!!!"])
def test_proof_with_bad_encoding_or_length_is_refused(proof: str) -> None:
    server, client, first = started()
    head = client.final_message(first).decode().rsplit(",p=", 1)[0]
    with pytest.raises(ScramError):
        server.evaluate_response(f"{head},p={proof}".encode())


def test_y_gs2_flag_is_allowed_with_matching_binding() -> None:
    _server, _client, first = started()
    server2 = make_server(SHA256, {"alice": "pw"}, nonce="SNONCE")
    first2 = server2.evaluate_response(b"y,,n=alice,r=CNONCE")
    assert first2 == first
    # The client proof covers the binding; compute it by hand for "y,,".
    formatter = ScramFormatter(SHA256)
    parsed = ServerFirstMessage.parse(first2)
    salted = formatter.salted_password("pw", parsed.salt, parsed.iterations)
    without_proof = ClientFinalMessage.build_without_proof("y,,", parsed.nonce)
    auth = f"n=alice,r=CNONCE,{first2.decode()},{without_proof}".encode()
    proof = base64.b64encode(formatter.client_proof(salted, auth)).decode()
    final = server2.evaluate_response(f"{without_proof},p={proof}".encode())
    assert final.startswith(b"v=") and server2.is_complete


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"n,,",
        b"p=tls-unique,,n=alice,r=abc",  # channel binding requested: refused
        b"x,,n=alice,r=abc",
        b"n,a=,n=alice,r=abc",
        b"n,b=x,n=alice,r=abc",
        b"n,,m=ext,n=alice,r=abc",  # mandatory extension
        b"n,,n=,r=abc",
        b"n,,n=al=ice,r=abc",  # bad escape
        b"n,,n=al=2cice,r=abc",  # escapes are upper case
        b"n,,u=alice,r=abc",
        b"n,,n=alice,x=abc",
        b"n,,n=alice,r=",
        b"n,,n=alice,r=a b",
        b"n,,n=alice,r=abc,tokenauth=true",  # delegation tokens: not supported
        b"n,,n=alice,r=abc,1=x",
        b"n,,n=alice,r=abc,k",
        b"n,,n=alice,r=abc,k=1,k=2",
        b"n,,n=al\x00ice,r=abc",
        b"n,,n=\xff\xfe,r=abc",
        b"n,,n=alice,r=abc" + b",a=" + b"x" * 70000,
    ],
)
def test_malformed_client_first(message: bytes) -> None:
    server = make_server(SHA256, {"alice": "pw"})
    with pytest.raises(ScramError):
        server.evaluate_response(message)
    with pytest.raises(ScramError):  # and the exchange is over
        server.evaluate_response(b"n,,n=alice,r=abc")


def test_unknown_extensions_are_ignored() -> None:
    server = make_server(SHA256, {"alice": "pw"})
    assert server.evaluate_response(b"n,,n=alice,r=abc,foo=bar").startswith(b"r=abc")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"c=biws",
        b"c=biws,r=CNONCESNONCE",
        b"r=CNONCESNONCE,c=biws,p=AAAA",
        b"c=biws,p=AAAA",
        b"c=biws,r=,p=AAAA",
        b"c=bi ws,r=CNONCESNONCE,p=AAAA",
        b"c=biws,r=CNONCESNONCE,p=AAAA,x=1",
        b"c=biws,r=CNONCESNONCE,=1,p=AAAA",
        b"\xff",
    ],
)
def test_malformed_client_final(message: bytes) -> None:
    server, _, _ = started()
    with pytest.raises(ScramError):
        server.evaluate_response(message)


def test_saslname_escaping_round_trip() -> None:
    assert encode_saslname("a,b=c") == "a=2Cb=3Dc"
    assert decode_saslname("a=2Cb=3Dc") == "a,b=c"
    assert decode_saslname(encode_saslname("=2C")) == "=2C"
    with pytest.raises(ScramError):
        decode_saslname("a=2")


def test_client_refuses_weak_or_foreign_server_first() -> None:
    client = ScramClient(SHA256, "alice", "pw", nonce="CNONCE")
    client.first_message()
    salt = base64.b64encode(b"salt").decode()
    with pytest.raises(ScramError):
        client.final_message(f"r=OTHER,s={salt},i=4096".encode())
    with pytest.raises(ScramError):
        client.final_message(f"r=CNONCEx,s={salt},i=1000".encode())


def test_mechanism_lookup() -> None:
    assert ScramMechanism.from_name("SCRAM-SHA-512") is SHA512
    assert ScramMechanism.from_type(1) is SHA256
    assert SHA512.digest_size == 64
    with pytest.raises(ValueError):
        ScramMechanism.from_type(3)
    with pytest.raises(ValueError):
        ScramMechanism.from_name("SCRAM-SHA-1")


def test_iterations_from_credential_are_advertised() -> None:
    server = make_server(SHA512, {"alice": "pw"}, iterations=8192)
    client = ScramClient(SHA512, "alice", "pw")
    first = server.evaluate_response(client.first_message())
    assert ServerFirstMessage.parse(first).iterations == 8192
    server.evaluate_response(client.final_message(first))
    assert server.is_complete


# -- fuzz: the parsers and the server only ever raise ScramError ------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_client_first_bytes(data: bytes) -> None:
    server = make_server(SHA256, {"alice": "pw"})
    with contextlib.suppress(ScramError):
        server.evaluate_response(data)


_alphabet = st.sampled_from(list("nyp,a=rcsi2C3DxAB+/\x00é "))


@settings(max_examples=300, deadline=None)
@given(st.text(_alphabet, max_size=60), st.text(_alphabet, max_size=80))
def test_fuzz_exchange_structured(first: str, final: str) -> None:
    server = make_server(SHA256, {"alice": "pw", "a": "pw"})
    for message in (first, final):
        try:
            server.evaluate_response(message.encode())
        except ScramError:
            break
    assert not server.is_complete


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_message_parsers(data: bytes) -> None:
    for parse in (ClientFirstMessage.parse, ClientFinalMessage.parse, ServerFirstMessage.parse):
        with contextlib.suppress(ScramError):
            parse(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_client_final_after_valid_first(data: bytes) -> None:
    server, _, _ = started()
    with pytest.raises(ScramError):
        server.evaluate_response(data)


def test_credential_has_no_password_material() -> None:
    cred = ScramFormatter(SHA256).credential("pencil", b"salt", 4096)
    assert isinstance(cred, ScramCredential)
    assert set(cred.__slots__) == {"salt", "stored_key", "server_key", "iterations"}
