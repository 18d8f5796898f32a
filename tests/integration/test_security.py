"""Listeners, TLS, mTLS, SASL (PLAIN, SCRAM-SHA-256/512) and users, with real clients over
TCP: confluent-kafka, kcat, kafkajs, aiokafka, kafka-python. Certificates are made here."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from riverbed.broker import ListenerConfig
from riverbed.cli.main import main as riverbed_main
from riverbed.cli.wire_client import WireClient
from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.security.credentials import FILE_NAME, CorruptCredentialStoreError
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node"
HAVE_NODE = shutil.which("node") is not None and (NODE_DIR / "node_modules" / "kafkajs").is_dir()
HAVE_KCAT = shutil.which("kcat") is not None
PASSWORD = "s3cret-Pässword"
USER = "alice"

# -- certificates --------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, ou: str = "eng") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Riverbed Test"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    expired: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else (now - dt.timedelta(hours=1), now + dt.timedelta(days=2))
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if server:
        import ipaddress

        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    ca_key, other_key = _key(), _key()
    ca_name, other_name = _name("Riverbed Test CA", "ca"), _name("Other CA", "ca")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    other = _cert(other_name, other_key, other_name, other_key, ca=True)
    _write(d / "ca", ca, ca_key)
    k = _key()
    _write(d / "server", _cert(_name("localhost", "brokers"), k, ca_name, ca_key, server=True), k)
    k = _key()
    _write(d / "client", _cert(_name("Alice", "ServiceUsers"), k, ca_name, ca_key), k)
    k = _key()
    _write(d / "expired", _cert(_name("Old"), k, ca_name, ca_key, expired=True), k)
    k = _key()
    _write(d / "selfsigned", _cert(_name("Mallory"), k, _name("Mallory"), k), k)
    k = _key()
    _write(d / "wrongca", _cert(_name("Eve"), k, other_name, other_key), k)
    _write(d / "other", other)
    return d


# -- brokers ---------------------------------------------------------------------------------------

LISTENERS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")


def _secure_broker(data_dir: Path, certs: Path, **extra: Any) -> EmbeddedBroker:
    listeners = [ListenerConfig(name, name, "127.0.0.1", 0) for name in LISTENERS]
    return EmbeddedBroker(
        data_dir,
        listeners=listeners,
        ssl_certificate_location=str(certs / "server.pem"),
        ssl_key_location=str(certs / "server.key"),
        ssl_ca_location=str(certs / "ca.pem"),
        ssl_client_auth="required",
        ssl_principal_mapping_rules=r"RULE:^CN=([^,]*),OU=ServiceUsers.*$/$1/L,DEFAULT",
        **extra,
    ).start()


def _add_user(broker: EmbeddedBroker, name: str = USER, password: str = PASSWORD) -> None:
    assert riverbed_main(["user", "add", name, "--password", password, "-b", broker.bootstrap_for("PLAINTEXT")]) == 0


@pytest.fixture(scope="module")
def sbroker(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[EmbeddedBroker]:
    broker = _secure_broker(tmp_path_factory.mktemp("secure"), certs)
    try:
        _add_user(broker)
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fresh(tmp_path: Path, certs: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own (failed logins slow down a host: keep them off the shared one)."""
    broker = _secure_broker(tmp_path / "data", certs)
    try:
        _add_user(broker)
        yield broker
    finally:
        broker.stop()


def _sasl_conf(broker: EmbeddedBroker, certs: Path, mechanism: str, user: str = USER, password: str = PASSWORD, tls: bool = True) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": broker.bootstrap_for("SASL_SSL" if tls else "SASL_PLAINTEXT"),
        "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if tls:
        conf["ssl.ca.location"] = str(certs / "ca.pem")
    return conf


def _roundtrip_confluent(conf: dict[str, Any], topic: str) -> None:
    p = Producer({**conf, "linger.ms": 0})
    for i in range(5):
        p.produce(topic, key=b"k", value=f"v{i}".encode())
    assert p.flush(15) == 0
    c = Consumer({**conf, "group.id": f"g-{topic}", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert got == [f"v{i}".encode() for i in range(5)]
    finally:
        c.close()


def _connections(broker: EmbeddedBroker, listener: str) -> list[dict[str, Any]]:
    app = broker._thread.app  # type: ignore[union-attr]

    def states() -> list[dict[str, Any]]:
        return [dict(c.info.state) for s in app.servers if s.config.listener_name == listener for c in s.connections if c.info]

    return list(broker.call(states))


# -- confluent-kafka -------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_sasl_ssl_scram(sbroker: EmbeddedBroker, certs: Path, topic_name: str, mechanism: str) -> None:
    _roundtrip_confluent(_sasl_conf(sbroker, certs, mechanism), topic_name)


def test_confluent_mtls_principal_from_certificate(sbroker: EmbeddedBroker, certs: Path, topic_name: str) -> None:
    conf = {
        "bootstrap.servers": sbroker.bootstrap_for("SSL"),
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs / "ca.pem"),
        "ssl.certificate.location": str(certs / "client.pem"),
        "ssl.key.location": str(certs / "client.key"),
    }
    p = Producer(conf)
    p.produce(topic_name, value=b"mtls")
    assert p.flush(15) == 0
    principals = {s.get("principal") for s in _connections(sbroker, "SSL")}
    assert "User:alice" in principals  # RULE:^CN=([^,]*),OU=ServiceUsers.*$/$1/L


def test_plaintext_connections_are_anonymous(sbroker: EmbeddedBroker) -> None:
    with socket.create_connection(tuple(sbroker.bootstrap_for("PLAINTEXT").rsplit(":", 1))) as s:  # type: ignore[arg-type]
        s.sendall(_request(18, 0, 7, b""))
        assert _read_frame(s)[:4] == struct.pack(">i", 7)
        assert all("principal" not in st for st in _connections(sbroker, "PLAINTEXT"))
    assert sbroker.broker.principal(_FakeConn()) == "User:ANONYMOUS"


class _FakeConn:
    state: dict[str, Any] = {}


# -- kcat ------------------------------------------------------------------------------------------


def _kcat(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(not HAVE_KCAT, reason="kcat not installed")
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kcat_sasl_ssl_scram(sbroker: EmbeddedBroker, certs: Path, topic_name: str, mechanism: str) -> None:
    conf = _sasl_conf(sbroker, certs, mechanism)
    common = ["-b", conf.pop("bootstrap.servers")]
    for k, v in conf.items():
        common += ["-X", f"{k}={v}"]
    out = _kcat([*common, "-P", "-t", topic_name], "one\ntwo\n")
    assert out.returncode == 0, out.stderr
    out = _kcat([*common, "-C", "-t", topic_name, "-o", "beginning", "-e", "-q"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["one", "two"]


@pytest.mark.skipif(not HAVE_KCAT, reason="kcat not installed")
def test_kcat_mtls(sbroker: EmbeddedBroker, certs: Path, topic_name: str) -> None:
    common = [
        "-b", sbroker.bootstrap_for("SSL"), "-X", "security.protocol=SSL",
        "-X", f"ssl.ca.location={certs / 'ca.pem'}",
        "-X", f"ssl.certificate.location={certs / 'client.pem'}",
        "-X", f"ssl.key.location={certs / 'client.key'}",
    ]  # fmt: skip
    out = _kcat([*common, "-P", "-t", topic_name], "mtls\n")
    assert out.returncode == 0, out.stderr
    out = _kcat([*common, "-C", "-t", topic_name, "-o", "beginning", "-e", "-q"])
    assert out.stdout.split() == ["mtls"], out.stderr


# -- kafkajs ---------------------------------------------------------------------------------------


def _node_sasl(broker: EmbeddedBroker, certs: Path, topic: str, mechanism: str, password: str = PASSWORD) -> dict[str, Any]:
    env = {
        **os.environ,
        "BOOTSTRAP": broker.bootstrap_for("SASL_SSL"),
        "MECHANISM": mechanism,
        "SASL_USER": USER,
        "SASL_PASSWORD": password,
        "CA": str(certs / "ca.pem"),
    }
    out = subprocess.run(["node", "sasl.js", topic], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not HAVE_NODE, reason="node or kafkajs not installed")
@pytest.mark.parametrize("mechanism", ["scram-sha-256", "scram-sha-512"])
def test_kafkajs_sasl_ssl_scram(sbroker: EmbeddedBroker, certs: Path, topic_name: str, mechanism: str) -> None:
    summary = _node_sasl(sbroker, certs, topic_name, mechanism)
    assert [o["high"] for o in summary["offsets"]] == ["1"]


@pytest.mark.skipif(not HAVE_NODE, reason="node or kafkajs not installed")
def test_kafkajs_wrong_password(fresh: EmbeddedBroker, certs: Path, topic_name: str) -> None:
    summary = _node_sasl(fresh, certs, topic_name, "scram-sha-512", password="wrong")
    assert summary["error"] == "KafkaJSSASLAuthenticationError", summary


# -- aiokafka and kafka-python over SASL_PLAINTEXT ---------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_aiokafka_sasl_plaintext(sbroker: EmbeddedBroker, topic_name: str, mechanism: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    kw = {
        "bootstrap_servers": sbroker.bootstrap_for("SASL_PLAINTEXT"),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": USER,
        "sasl_plain_password": PASSWORD,
    }

    async def run() -> list[bytes]:
        prod = AIOKafkaProducer(**kw)
        await prod.start()
        try:
            for i in range(3):
                await prod.send_and_wait(topic_name, f"a{i}".encode())
        finally:
            await prod.stop()
        cons = AIOKafkaConsumer(**kw, enable_auto_commit=False, auto_offset_reset="earliest")
        await cons.start()
        try:
            cons.assign([TopicPartition(topic_name, 0)])
            await cons.seek_to_beginning()
            got: list[bytes] = []
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                for msgs in (await cons.getmany(timeout_ms=500)).values():
                    got += [m.value for m in msgs if m.value is not None]
            return got
        finally:
            await cons.stop()

    assert asyncio.run(run()) == [b"a0", b"a1", b"a2"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_kafka_python_sasl_plaintext(sbroker: EmbeddedBroker, topic_name: str, mechanism: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    kw = {
        "bootstrap_servers": sbroker.bootstrap_for("SASL_PLAINTEXT"),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": USER,
        "sasl_plain_password": PASSWORD,
    }
    prod = KafkaProducer(**kw)
    for i in range(3):
        prod.send(topic_name, f"k{i}".encode()).get(timeout=10)
    prod.close()
    cons = KafkaConsumer(**kw, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic_name, 0)
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        got: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(got) < 3 and time.monotonic() < deadline:
            for records in cons.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
        assert got == [b"k0", b"k1", b"k2"]
    finally:
        cons.close()


# -- failures --------------------------------------------------------------------------------------


def _auth_error(conf: dict[str, Any]) -> KafkaError:
    errors: list[KafkaError] = []
    p = Producer({**conf, "error_cb": errors.append, "reconnect.backoff.ms": 60000, "reconnect.backoff.max.ms": 60000, "socket.timeout.ms": 5000})
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    del p  # destroys the client: no more failed attempts (they would slow this host down)
    gc.collect()
    assert errors, "no error reported"
    return errors[0]


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong"), ("nobody", PASSWORD)], ids=["wrong-password", "unknown-user"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_bad_credentials_fail_cleanly(fresh: EmbeddedBroker, certs: Path, topic_name: str, user: str, password: str, mechanism: str) -> None:
    err = _auth_error(_sasl_conf(fresh, certs, mechanism, user=user, password=password))
    assert err.code() == KafkaError._AUTHENTICATION, err
    assert "Authentication failed" in err.str()
    # the broker keeps serving everyone else
    _roundtrip_confluent(_sasl_conf(fresh, certs, "SCRAM-SHA-256"), topic_name)


def _tls_client(certs: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(str(certs / f"{cert}.pem"), str(certs / f"{cert}.key"))
    return ctx


@pytest.mark.parametrize("cert", ["expired", "selfsigned", "wrongca", None])
def test_bad_client_certificates_refused(sbroker: EmbeddedBroker, certs: Path, cert: str | None) -> None:
    host, port = sbroker.bootstrap_for("SSL").rsplit(":", 1)
    ctx = _tls_client(certs, cert)
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)), socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(_request(18, 0, 1, b""))  # TLS 1.3: the refusal arrives on the first read
        _read_frame(s)
    # a good certificate still works
    with socket.create_connection((host, int(port)), timeout=5) as raw, _tls_client(certs, "client").wrap_socket(raw, server_hostname=host) as s:
        s.sendall(_request(18, 0, 2, b""))
        assert _read_frame(s)[:4] == struct.pack(">i", 2)


def test_confluent_wrong_ca_client_certificate(sbroker: EmbeddedBroker, certs: Path) -> None:
    err = _auth_error(
        {
            "bootstrap.servers": sbroker.bootstrap_for("SSL"),
            "security.protocol": "SSL",
            "ssl.ca.location": str(certs / "ca.pem"),
            "ssl.certificate.location": str(certs / "wrongca.pem"),
            "ssl.key.location": str(certs / "wrongca.key"),
        }
    )
    assert err.code() in (KafkaError._TRANSPORT, KafkaError._SSL, KafkaError._ALL_BROKERS_DOWN), err


# -- the wire: requests before authentication, raw v0 tokens, advertised listeners ------------------


def _request(key: int, version: int, corr: int, body: bytes, client_id: bytes = b"t") -> bytes:
    payload = struct.pack(">hhih", key, version, corr, len(client_id)) + client_id + body
    return struct.pack(">i", len(payload)) + payload


def _read_frame(s: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return buf

    return exact(struct.unpack(">i", exact(4))[0])


def _string(value: str) -> bytes:
    return struct.pack(">h", len(value)) + value.encode()


def _sasl_socket(broker: EmbeddedBroker) -> socket.socket:
    host, port = broker.bootstrap_for("SASL_PLAINTEXT").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def test_request_before_authentication_closes(sbroker: EmbeddedBroker) -> None:
    with _sasl_socket(sbroker) as s:
        s.sendall(_request(18, 0, 1, b""))  # ApiVersions is allowed
        assert _read_frame(s)[:4] == struct.pack(">i", 1)
        s.sendall(_request(3, 1, 2, struct.pack(">i", -1)))  # Metadata is not
        with pytest.raises((EOFError, ConnectionError)):
            _read_frame(s)


def test_sasl_handshake_v0_raw_plain_token(sbroker: EmbeddedBroker) -> None:
    with _sasl_socket(sbroker) as s:
        s.sendall(_request(17, 0, 1, _string("PLAIN")))
        resp = _read_frame(s)
        assert resp[4:6] == b"\x00\x00"  # NONE
        token = f"\0{USER}\0{PASSWORD}".encode()
        s.sendall(struct.pack(">i", len(token)) + token)
        assert _read_frame(s) == b""  # PLAIN's empty answer, raw
        s.sendall(_request(3, 1, 2, struct.pack(">i", -1)))  # now Metadata works
        assert _read_frame(s)[:4] == struct.pack(">i", 2)


def test_sasl_handshake_v1_wrong_plain_gets_error_then_close(fresh: EmbeddedBroker) -> None:
    with _sasl_socket(fresh) as s:
        s.sendall(_request(17, 1, 1, _string("PLAIN")))
        _read_frame(s)
        token = f"\0{USER}\0nope".encode()
        s.sendall(_request(36, 1, 2, struct.pack(">i", len(token)) + token))
        resp = _read_frame(s)
        assert struct.unpack(">h", resp[4:6])[0] == 58  # SASL_AUTHENTICATION_FAILED
        assert b"Authentication failed during authentication due to invalid credentials" in resp
        with pytest.raises((EOFError, ConnectionError)):
            _read_frame(s)


def test_unknown_mechanism_is_refused(sbroker: EmbeddedBroker) -> None:
    with _sasl_socket(sbroker) as s:
        s.sendall(_request(17, 1, 1, _string("GSSAPI")))
        resp = _read_frame(s)
        assert struct.unpack(">h", resp[4:6])[0] == 33  # UNSUPPORTED_SASL_MECHANISM
        assert b"SCRAM-SHA-512" in resp


def test_metadata_advertises_the_listener_the_client_came_in_on(tmp_path: Path) -> None:
    listeners = [
        ListenerConfig("INTERNAL", "PLAINTEXT", "127.0.0.1", 0),
        ListenerConfig("EXTERNAL", "PLAINTEXT", "127.0.0.1", 0, advertised_host="kafka.example.com", advertised_port=19092),
    ]
    with EmbeddedBroker(tmp_path, listeners=listeners) as broker:
        for name, expect in [("INTERNAL", broker.bootstrap_for("INTERNAL")), ("EXTERNAL", "kafka.example.com:19092")]:
            port = broker._thread.app.broker.bound_ports[name]  # type: ignore[union-attr]
            with WireClient(f"127.0.0.1:{port}") as client:
                md = client.request(MetadataRequest(topics=[]), 9)
            assert isinstance(md, MetadataResponse)
            assert [f"{b.host}:{b.port}" for b in md.brokers] == [expect]
        assert broker.bootstrap == broker.bootstrap_for("INTERNAL")


# -- users: CLI, restart, corrupt store --------------------------------------------------------------


def test_user_cli_list_delete_and_restart(tmp_path: Path, certs: Path, topic_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    broker = _secure_broker(data, certs)
    try:
        plain = broker.bootstrap_for("PLAINTEXT")
        _add_user(broker, "bob", "bob-pw")
        assert riverbed_main(["user", "add", "carol", "--password", "c", "--mechanism", "SCRAM-SHA-512", "--iterations", "8192", "-b", plain]) == 0
        capsys.readouterr()
        assert riverbed_main(["user", "list", "-b", plain]) == 0
        out = capsys.readouterr().out
        assert "bob\tSCRAM-SHA-256 (4096 iterations), SCRAM-SHA-512 (4096 iterations)" in out
        assert "carol\tSCRAM-SHA-512 (8192 iterations)" in out
        assert riverbed_main(["user", "delete", "carol", "-b", plain]) == 0
        assert riverbed_main(["user", "delete", "carol", "-b", plain]) == 1
        assert (data / FILE_NAME).stat().st_mode & 0o777 == 0o600
        # the CLI over SASL_SSL itself
        cfg = tmp_path / "client.properties"
        cfg.write_text(f"security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=bob\nsasl.password=bob-pw\nssl.ca.location={certs / 'ca.pem'}\n")
        capsys.readouterr()
        assert riverbed_main(["user", "list", "-b", broker.bootstrap_for("SASL_SSL"), "--command-config", str(cfg)]) == 0
        assert "carol" not in capsys.readouterr().out
    finally:
        broker.stop()
    broker = _secure_broker(data, certs)  # restart: the users are still there
    try:
        _roundtrip_confluent(_sasl_conf(broker, certs, "SCRAM-SHA-512", user="bob", password="bob-pw"), topic_name)
        err = _auth_error(_sasl_conf(broker, certs, "SCRAM-SHA-512", user="carol", password="c"))
        assert err.code() == KafkaError._AUTHENTICATION
    finally:
        broker.stop()


def test_offline_user_add_and_password_stdin(tmp_path: Path, certs: Path, topic_name: str) -> None:

    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "riverbed", "user", "add", "dave", "--password-stdin", "--data-dir", str(data)],
        input="dave-pw\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    broker = _secure_broker(data, certs)
    try:
        _roundtrip_confluent(_sasl_conf(broker, certs, "PLAIN", user="dave", password="dave-pw"), topic_name)
    finally:
        broker.stop()


def test_corrupt_credential_store_stops_start_up(tmp_path: Path, certs: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(CorruptCredentialStoreError):
        EmbeddedBroker(tmp_path).start()


def test_acls_apply_to_the_sasl_principal(tmp_path: Path, certs: Path) -> None:
    """The lecture's ACL example with an authenticated user: billing (SCRAM over SASL_SSL)
    reads `orders` in group billing-service, may not write it, and does not see `payroll`.
    The PLAINTEXT listener is the admin's here (super.users=User:ANONYMOUS)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = _secure_broker(tmp_path / "data", certs, authorizer_enabled=True, super_users=("User:ANONYMOUS",))
    try:
        admin_bootstrap = broker.bootstrap_for("PLAINTEXT")
        _add_user(broker, "billing", "billing-secret")
        admin = AdminClient({"bootstrap.servers": admin_bootstrap})
        for f in admin.create_topics([NewTopic("orders", 1, 1), NewTopic("payroll", 1, 1)]).values():
            f.result(10)
        p = Producer({"bootstrap.servers": admin_bootstrap})
        p.produce("orders", value=b"order-1")
        assert p.flush(10) == 0
        for target in (["--topic", "orders"], ["--group", "billing-service"]):
            assert riverbed_main(["acl", "add", "--principal", "User:billing", "--operation", "READ", *target, "-b", admin_bootstrap]) == 0
        conf = _sasl_conf(broker, certs, "SCRAM-SHA-512", "billing", "billing-secret")
        c = Consumer({**conf, "group.id": "billing-service", "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["orders"])
        got = None
        deadline = time.monotonic() + 20
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got = m.value()
        c.close()
        assert got == b"order-1"
        errors: list[KafkaError] = []
        prod = Producer({**conf, "enable.idempotence": False, "message.timeout.ms": 5000})
        prod.produce("orders", value=b"forged", on_delivery=lambda err, _m: errors.append(err))
        prod.flush(10)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
        topics = AdminClient(conf).list_topics(timeout=10).topics
        assert "orders" in topics and "payroll" not in topics
    finally:
        broker.stop()


def test_large_frames_before_authentication_close_the_connection(sbroker: EmbeddedBroker) -> None:
    """Kafka's sasl.server.max.receive.size: before a SASL login, a frame over 512 KiB is not
    buffered; the connection is closed (the broker keeps serving others)."""
    with _sasl_socket(sbroker) as s:
        s.sendall(struct.pack(">i", 1 << 20) + b"\0" * 1024)
        with pytest.raises((EOFError, ConnectionError)):
            _read_frame(s)
    with _sasl_socket(sbroker) as s:  # a small request is still served
        s.sendall(_request(18, 0, 1, b""))
        assert _read_frame(s)[:4] == struct.pack(">i", 1)


def test_per_listener_settings(tmp_path: Path, certs: Path, topic_name: str) -> None:
    """listener.name.<x>.*: a SASL_SSL listener that also requires client certificates
    (KIP-684; the principal stays the SASL user), and a SASL_PLAINTEXT listener that offers
    SCRAM only while the broker-wide default still has PLAIN."""
    listeners = [
        ListenerConfig("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 0),
        ListenerConfig("SASL_SSL", "SASL_SSL", "127.0.0.1", 0, ssl_client_auth="required"),
        ListenerConfig("SASL_PLAINTEXT", "SASL_PLAINTEXT", "127.0.0.1", 0, sasl_enabled_mechanisms=("SCRAM-SHA-512",)),
    ]
    broker = EmbeddedBroker(
        tmp_path / "data",
        listeners=listeners,
        ssl_certificate_location=str(certs / "server.pem"),
        ssl_key_location=str(certs / "server.key"),
        ssl_ca_location=str(certs / "ca.pem"),
    ).start()
    try:
        _add_user(broker, "bob")
        conf = _sasl_conf(broker, certs, "SCRAM-SHA-256", user="bob")
        with_cert = {**conf, "ssl.certificate.location": str(certs / "client.pem"), "ssl.key.location": str(certs / "client.key")}
        _roundtrip_confluent(with_cert, topic_name)
        p = Producer(with_cert)  # kept open while its connection is looked at
        p.produce(topic_name, value=b"x")
        assert p.flush(15) == 0
        principals = {s.get("principal") for s in _connections(broker, "SASL_SSL")}
        assert principals == {"User:bob"}  # not the certificate's subject
        del p
        # without a client certificate the TLS handshake fails
        host, port = broker.bootstrap_for("SASL_SSL").rsplit(":", 1)
        with pytest.raises((ssl.SSLError, ConnectionError, EOFError)), socket.create_connection((host, int(port)), timeout=5) as raw, _tls_client(certs, None).wrap_socket(raw, server_hostname=host) as s:
            s.sendall(_request(18, 0, 1, b""))
            _read_frame(s)
        # the SASL_PLAINTEXT listener offers SCRAM-SHA-512 only
        with _sasl_socket(broker) as s:
            s.sendall(_request(17, 1, 1, _string("PLAIN")))
            resp = _read_frame(s)
            assert struct.unpack(">h", resp[4:6])[0] == 33  # UNSUPPORTED_SASL_MECHANISM
            assert struct.unpack(">i", resp[6:10])[0] == 1 and b"SCRAM-SHA-512" in resp
        _roundtrip_confluent(_sasl_conf(broker, certs, "SCRAM-SHA-512", user="bob", tls=False), topic_name + "-2")
    finally:
        broker.stop()
