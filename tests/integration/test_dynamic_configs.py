"""Dynamic broker configs (AlterConfigs / IncrementalAlterConfigs / DescribeConfigs on BROKER
resources) with real clients over TCP: confluent-kafka, kafka-python, kafkajs (the cluster
default, resource name "", which the Python clients cannot name), the riverbed CLI, and a
broker process restarted on the same data dir."""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kafka.admin import ConfigResource as KPConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

from riverbed.broker import ListenerConfig
from riverbed.cli.main import main as riverbed_main
from riverbed.testing import BrokerProcess, EmbeddedBroker

pytestmark = pytest.mark.integration

BROKER = ConfigResource.Type.BROKER


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _admin(bootstrap: str, **extra: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **extra})


def _alter(admin: AdminClient, name: str, set_: dict[str, str] | None = None, delete: tuple[str, ...] = (), validate_only: bool = False) -> None:
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in (set_ or {}).items()]
    entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in delete]
    res = ConfigResource(BROKER, name, incremental_configs=entries)
    admin.incremental_alter_configs([res], validate_only=validate_only, request_timeout=30)[res].result(timeout=30)


def _alter_error(admin: AdminClient, name: str, set_: dict[str, str]) -> KafkaError:
    with pytest.raises(KafkaException) as info:
        _alter(admin, name, set_)
    err = info.value.args[0]
    assert isinstance(err, KafkaError)
    return err


def _describe(admin: AdminClient, resource: ConfigResource) -> dict[str, Any]:
    return dict(admin.describe_configs([resource], request_timeout=30)[resource].result(timeout=30))


def _produce(bootstrap: str, topic: str, size: int, **extra: str) -> KafkaError | None:
    """Produce one record of ``size`` bytes; its delivery error (None when stored)."""
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 10_000_000, "retries": 0, **extra})
    out: list[KafkaError | None] = []
    p.produce(topic, b"x" * size, on_delivery=lambda err, _msg: out.append(err))
    p.flush(60)
    assert out, "no delivery report"
    return out[0]


def _create(admin: AdminClient, topic: str, config: dict[str, str] | None = None) -> None:
    admin.create_topics([NewTopic(topic, 1, config=config or {})], request_timeout=30)[topic].result(timeout=30)


# --------------------------------------------------------------------------- describe


def test_describe_broker_lists_kafka_settings_with_sources_and_read_only(broker: EmbeddedBroker) -> None:
    """Every broker setting Kafka lists that riverbed has, with its source (static settings
    given when the broker started are STATIC_BROKER_CONFIG) and read_only as Kafka marks it
    (what riverbed changes at run time is not read-only)."""
    cfg = _describe(_admin(broker.bootstrap), ConfigResource(BROKER, "1"))
    for name in ("listeners", "advertised.listeners", "node.id", "broker.id", "log.dirs", "process.roles", "listener.security.protocol.map"):
        assert name in cfg, name
    assert cfg["listeners"].value == f"PLAINTEXT://{broker.bootstrap}"
    assert cfg["advertised.listeners"].value == f"PLAINTEXT://{broker.bootstrap}"
    assert cfg["log.dirs"].value == str(broker.data_dir)
    assert cfg["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert cfg["node.id"].value == cfg["broker.id"].value == "1"
    for name in ("listeners", "log.dirs", "node.id", "auto.create.topics.enable", "num.partitions", "log.retention.check.interval.ms"):
        assert cfg[name].is_read_only, name
    for name in ("message.max.bytes", "log.retention.ms", "log.segment.bytes", "log.cleanup.policy", "log.flush.interval.messages", "log.cleaner.io.max.bytes.per.second", "log.cleaner.threads"):
        assert not cfg[name].is_read_only, name
        assert cfg[name].source == ConfigSource.DEFAULT_CONFIG.value, name


# --------------------------------------------------------------------------- effect without restart


def test_message_max_bytes_per_broker_applies_at_once_and_delete_restores(broker: EmbeddedBroker, topic_name: str) -> None:
    admin = _admin(broker.bootstrap)
    _create(admin, topic_name)
    assert _produce(broker.bootstrap, topic_name, 5000) is None
    _alter(admin, "1", {"message.max.bytes": "2000"})
    err = _produce(broker.bootstrap, topic_name, 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert _produce(broker.bootstrap, topic_name, 500) is None
    entry = _describe(admin, ConfigResource(BROKER, "1"))["message.max.bytes"]
    assert (entry.value, entry.source) == ("2000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    topic_entry = _describe(admin, ConfigResource(ConfigResource.Type.TOPIC, topic_name))["max.message.bytes"]
    assert (topic_entry.value, topic_entry.source) == ("2000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _alter(admin, "1", delete=("message.max.bytes",))
    assert _produce(broker.bootstrap, topic_name, 5000) is None
    entry = _describe(admin, ConfigResource(BROKER, "1"))["message.max.bytes"]
    assert (entry.value, entry.source) == ("1048588", ConfigSource.DEFAULT_CONFIG.value)


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_legacy_alter_configs_replaces_the_broker_level(broker: EmbeddedBroker) -> None:
    """AlterConfigs (not incremental) sets every dynamic setting of the level at once: what
    it does not name goes back to the next level, as in Kafka."""
    admin = _admin(broker.bootstrap)
    _alter(admin, "1", {"log.segment.bytes": "2097152", "message.max.bytes": "4000"})
    res = ConfigResource(BROKER, "1", set_config={"message.max.bytes": "3000"})
    admin.alter_configs([res], request_timeout=30)[res].result(timeout=30)
    cfg = _describe(admin, ConfigResource(BROKER, "1"))
    assert (cfg["message.max.bytes"].value, cfg["message.max.bytes"].source) == ("3000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert (cfg["log.segment.bytes"].value, cfg["log.segment.bytes"].source) == ("1073741824", ConfigSource.DEFAULT_CONFIG.value)
    bad = ConfigResource(BROKER, "1", set_config={"delete.topic.enable": "false"})
    with pytest.raises(KafkaException) as info:
        admin.alter_configs([bad], request_timeout=30)[bad].result(timeout=30)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG and "delete.topic.enable" in info.value.args[0].str()


def _low_watermark(broker: EmbeddedBroker, topic: str) -> int:
    plog = broker.call(broker.broker.partition, topic, 0)
    return int(plog.log_start_offset)


def test_retention_default_change_applies_to_topics_without_an_override(broker: EmbeddedBroker, topic_name: str) -> None:
    """log.retention.ms changed at run time: a topic that does not override retention.ms
    drops its hour-old segments at the next retention check; a topic that overrides it keeps
    them."""
    admin = _admin(broker.bootstrap)
    plain, pinned = topic_name, topic_name + "-pinned"
    _create(admin, plain, {"segment.bytes": "1024"})
    _create(admin, pinned, {"segment.bytes": "1024", "retention.ms": str(7 * 86_400_000)})
    hour_ago = int(time.time() * 1000) - 3_600_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for topic in (plain, pinned):
        for i in range(20):
            p.produce(topic, b"v" * 200, key=str(i).encode(), timestamp=hour_ago)
            p.flush(30)
    broker.call(broker.broker.run_retention)
    assert _low_watermark(broker, plain) == 0  # 7 days by default: nothing is old enough
    _alter(admin, "1", {"log.retention.ms": "60000"})
    entry = _describe(admin, ConfigResource(ConfigResource.Type.TOPIC, plain))["retention.ms"]
    assert (entry.value, entry.source) == ("60000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)

    def trimmed() -> bool:
        broker.call(broker.broker.run_retention)
        return _low_watermark(broker, plain) > 0

    wait_for(trimmed, "the hour-old segments of the topic without an override to go")
    assert _low_watermark(broker, pinned) == 0


# --------------------------------------------------------------------------- refusals


def test_read_only_per_broker_and_unknown_settings_as_kafka(broker: EmbeddedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    admin = _admin(broker.bootstrap)
    err = _alter_error(admin, "1", {"auto.create.topics.enable": "false"})
    assert err.code() == KafkaError.INVALID_CONFIG and "auto.create.topics.enable" in err.str()
    err = _alter_error(admin, "1", {"listeners": "PLAINTEXT://127.0.0.1:1"})
    assert err.code() == KafkaError.INVALID_CONFIG and "listeners" in err.str()
    err = _alter_error(admin, "1", {"ssl.keystore.location": "/x.pem"})  # only with a listener prefix
    assert err.code() == KafkaError.INVALID_CONFIG and "listener prefix" in err.str()
    err = _alter_error(admin, "1", {"message.max.bytes": "lots"})
    assert err.code() == KafkaError.INVALID_CONFIG and "message.max.bytes" in err.str()
    # another broker's id (the clients would route it to that broker: the wire client asks this one)
    assert riverbed_main(["config", "alter", "--broker", "7", "--set", "message.max.bytes=2000", "-b", broker.bootstrap]) == 1
    assert "INVALID_REQUEST: Unexpected broker id, expected 1, but received 7" in capsys.readouterr().err
    # validate_only: checked, not applied
    _alter(admin, "1", {"message.max.bytes": "3000"}, validate_only=True)
    assert _describe(admin, ConfigResource(BROKER, "1"))["message.max.bytes"].value == "1048588"
    # a name riverbed does not know is kept, as Kafka keeps custom configs, and described
    # as Kafka describes a config of unknown type: sensitive, value hidden
    # APPEND to a list setting starts from Kafka's default at that level
    res = ConfigResource(BROKER, "1", incremental_configs=[ConfigEntry("log.cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=30)
    entry = _describe(admin, ConfigResource(BROKER, "1"))["log.cleanup.policy"]
    assert (entry.value, entry.source) == ("delete,compact", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    _alter(admin, "1", {"custom.plugin.setting": "42"})
    entry = _describe(admin, ConfigResource(BROKER, "1"))["custom.plugin.setting"]
    assert entry.is_sensitive and entry.value is None and entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value


# --------------------------------------------------------------------------- cluster default, synonyms


def test_cluster_default_and_synonym_order_with_kafka_python(broker: EmbeddedBroker, topic_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The cluster-wide default (resource name ""; confluent-kafka, kafka-python and kafkajs
    all refuse that name client-side, so the riverbed CLI sets it over the wire), then the
    order of synonyms as Kafka gives them: per broker, cluster default, static, default."""
    b = broker.bootstrap
    assert riverbed_main(["config", "alter", "--broker", "", "--set", "log.retention.ms=86400000", "-b", b]) == 0
    assert riverbed_main(["config", "alter", "--broker", "", "--set", "log.dirs=/elsewhere", "-b", b]) == 1
    assert "INVALID_CONFIG: Cannot update these configs dynamically: Set(log.dirs)" in capsys.readouterr().err
    assert riverbed_main(["config", "describe", "--broker", "", "--synonyms", "-b", b]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()[1:]]
    assert lines == ["log.retention.ms=86400000\tDYNAMIC_DEFAULT_BROKER_CONFIG\tsynonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=86400000}"]

    admin = _admin(broker.bootstrap)
    _alter(admin, "1", {"log.retention.ms": "3600000"})
    _create(admin, topic_name)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        kp.alter_configs([KPConfigResource(ConfigResourceType.BROKER, "1", {"log.segment.bytes": "2097152"})])
        got = kp.describe_configs(
            [KPConfigResource(ConfigResourceType.BROKER, "1"), KPConfigResource(ConfigResourceType.TOPIC, topic_name)],
            include_synonyms=True,
            config_filter="all",
        )
    finally:
        kp.close()
    brk = got["broker"]["1"]
    assert brk["log.retention.ms"]["value"] == "3600000"
    assert brk["log.retention.ms"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
    assert [(s["source"], s["value"]) for s in brk["log.retention.ms"]["synonyms"]] == [
        ("DYNAMIC_BROKER_CONFIG", "3600000"),
        ("DYNAMIC_DEFAULT_BROKER_CONFIG", "86400000"),
        ("DEFAULT_CONFIG", "604800000"),
    ]
    assert brk["log.segment.bytes"]["value"] == "2097152" and not brk["log.segment.bytes"]["read_only"]
    assert (brk["log.retention.ms"]["config_type"], brk["log.cleanup.policy"]["config_type"], brk["auto.create.topics.enable"]["config_type"]) == ("LONG", "LIST", "BOOLEAN")
    assert brk["auto.create.topics.enable"]["read_only"] and brk["log.dirs"]["config_source"] == "STATIC_BROKER_CONFIG"
    topic = got["topic"][topic_name]["retention.ms"]
    assert topic["value"] == "3600000" and topic["config_source"] == "DYNAMIC_BROKER_CONFIG"
    assert [(s["name"], s["source"]) for s in topic["synonyms"]] == [
        ("log.retention.ms", "DYNAMIC_BROKER_CONFIG"),
        ("log.retention.ms", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
        ("log.retention.ms", "DEFAULT_CONFIG"),
    ]


# --------------------------------------------------------------------------- persistence, CLI


def test_dynamic_configs_survive_a_restart_and_beat_static_ones(tmp_path: Path, topic_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = BrokerProcess(data, extra=["--set", "log.retention.ms=3600000"])
    with proc:
        b = proc.bootstrap
        assert riverbed_main(["config", "alter", "--broker", "", "--set", "log.retention.ms=7200000", "-b", b]) == 0
        assert riverbed_main(["config", "alter", "--broker", "1", "--set", "message.max.bytes=2000", "-b", b]) == 0
        assert riverbed_main(["config", "alter", "--broker", "1", "--set", "num.partitions=3", "-b", b]) == 1
        assert "Cannot update these configs dynamically: Set(num.partitions)" in capsys.readouterr().err
        proc.terminate()
        proc.start()
        admin = _admin(b)
        _create(admin, topic_name)
        err = _produce(b, topic_name, 5000)
        assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
        kp = KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=30000)
        try:
            got = kp.describe_configs([KPConfigResource(ConfigResourceType.BROKER, "1", {"log.retention.ms": None, "message.max.bytes": None})], include_synonyms=True, config_filter="all")
        finally:
            kp.close()
        retention = got["broker"]["1"]["log.retention.ms"]
        assert retention["value"] == "7200000" and retention["config_source"] == "DYNAMIC_DEFAULT_BROKER_CONFIG"
        assert [(s["source"], s["value"]) for s in retention["synonyms"]] == [
            ("DYNAMIC_DEFAULT_BROKER_CONFIG", "7200000"),
            ("STATIC_BROKER_CONFIG", "3600000"),
            ("DEFAULT_CONFIG", "604800000"),
        ]
        assert got["broker"]["1"]["message.max.bytes"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
        capsys.readouterr()
        assert riverbed_main(["config", "describe", "--broker", "1", "--synonyms", "-b", b]) == 0
        text = capsys.readouterr().out
        assert "message.max.bytes=2000\tDYNAMIC_BROKER_CONFIG" in text
        assert "log.retention.ms=7200000\tDYNAMIC_DEFAULT_BROKER_CONFIG" in text
        assert "log.dirs=" in text and "read-only" in text
        assert riverbed_main(["config", "alter", "--broker", "", "--delete", "log.retention.ms", "-b", b]) == 0
        assert riverbed_main(["config", "describe", "--broker", "", "-b", b]) == 0
        assert "log.retention.ms" not in capsys.readouterr().out


# --------------------------------------------------------------------------- TLS reload


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server_cert(d: Path, stem: str, cn: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> None:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))


def _served_issuer(bootstrap: str, cafile: Path) -> str:
    """The issuer's common name of the certificate a new TLS connection is given (no SNI
    sent); the handshake verifies it against ``cafile``."""
    host, _, port = bootstrap.rpartition(":")
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=30) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return str(x509.load_der_x509_certificate(der).issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_listener_certificate_reload_for_new_connections(tmp_path: Path, topic_name: str) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca1, ca1_key = _ca("CA one")
    ca2, ca2_key = _ca("CA two")
    (certs / "ca1.pem").write_bytes(ca1.public_bytes(serialization.Encoding.PEM))
    (certs / "ca2.pem").write_bytes(ca2.public_bytes(serialization.Encoding.PEM))
    _server_cert(certs, "old", "broker", ca1, ca1_key)
    _server_cert(certs, "new", "broker", ca2, ca2_key, password=b"key-pass")  # renewed, by another CA
    _server_cert(certs, "other", "someone-else", ca2, ca2_key)
    listeners = [ListenerConfig("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 0), ListenerConfig("SSL", "SSL", "127.0.0.1", 0)]
    with EmbeddedBroker(tmp_path / "data", listeners=listeners, ssl_certificate_location=str(certs / "old.pem"), ssl_key_location=str(certs / "old.key")) as b:
        ssl_bootstrap = b.bootstrap_for("SSL")
        assert _served_issuer(ssl_bootstrap, certs / "ca1.pem") == "CA one"
        admin = _admin(b.bootstrap)
        # a key that does not load is refused, and the old certificate stays
        bad = {"listener.name.ssl.ssl.keystore.location": str(certs / "new.pem"), "listener.name.ssl.ssl.key.location": str(certs / "new.key"), "listener.name.ssl.ssl.key.password": "wrong"}
        err = _alter_error(admin, "1", bad)
        assert err.code() == KafkaError.INVALID_CONFIG
        assert _served_issuer(ssl_bootstrap, certs / "ca1.pem") == "CA one"
        # cluster-wide default: refused, TLS files are per broker (Kafka's per-broker mode)
        assert riverbed_main(["config", "alter", "--broker", "", "--set", f"listener.name.ssl.ssl.keystore.location={certs / 'new.pem'}", "-b", b.bootstrap]) == 1
        # a certificate for another subject is refused, as Kafka refuses it (ssl.allow.dn.changes)
        other = {"listener.name.ssl.ssl.keystore.location": str(certs / "other.pem"), "listener.name.ssl.ssl.key.location": str(certs / "other.key")}
        err = _alter_error(admin, "1", other)
        assert err.code() == KafkaError.INVALID_CONFIG and "DistinguishedName does not match" in err.str(), err
        assert _served_issuer(ssl_bootstrap, certs / "ca1.pem") == "CA one"
        good = {**bad, "listener.name.ssl.ssl.key.password": "key-pass"}
        _alter(admin, "1", good)
        assert _served_issuer(ssl_bootstrap, certs / "ca2.pem") == "CA two"
        # a real client that trusts only the new CA now works over the SSL listener
        err2 = _produce(ssl_bootstrap, topic_name, 100, **{"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca2.pem")})
        assert err2 is None, err2
        # files replaced in place are reloaded when the same settings are set again (as Kafka)
        _server_cert(certs, "new", "broker", ca1, ca1_key, password=b"key-pass")
        _alter(admin, "1", good)
        assert _served_issuer(ssl_bootstrap, certs / "ca1.pem") == "CA one"
        cfg = _describe(admin, ConfigResource(BROKER, "1"))
        loc = cfg["listener.name.ssl.ssl.keystore.location"]
        assert (loc.value, loc.source, loc.is_read_only) == (str(certs / "new.pem"), ConfigSource.DYNAMIC_BROKER_CONFIG.value, False)
        pw = cfg["listener.name.ssl.ssl.key.password"]
        assert pw.is_sensitive and pw.value is None
        del admin
        gc.collect()  # the admin client goes before its broker
    # after a restart the dynamic settings still win over the static ones
    _server_cert(certs, "new", "broker", ca2, ca2_key, password=b"key-pass")
    with EmbeddedBroker(tmp_path / "data", listeners=listeners, ssl_certificate_location=str(certs / "old.pem"), ssl_key_location=str(certs / "old.key")) as b:
        assert _served_issuer(b.bootstrap_for("SSL"), certs / "ca2.pem") == "CA two"


def test_cleaner_settings_change_without_a_restart(broker: EmbeddedBroker) -> None:
    """log.cleaner.* (Kafka: cluster-wide dynamic): the running cleaner takes the new
    throttle, memory and backoff."""
    admin = _admin(broker.bootstrap)
    _alter(admin, "1", {"log.cleaner.io.max.bytes.per.second": "1048576", "log.cleaner.backoff.ms": "2500", "log.cleaner.dedupe.buffer.size": "2097152"})
    cleaner = broker.broker.logs.cleaner
    wait_for(lambda: cleaner.config.backoff_ms == 2500, "the cleaner to take the new settings")
    assert cleaner.config.io_max_bytes_per_second == 1048576.0 and cleaner.config.dedupe_buffer_bytes == 2097152
    assert cleaner._throttle.rate == 1048576.0
    _alter(admin, "1", delete=("log.cleaner.io.max.bytes.per.second", "log.cleaner.backoff.ms", "log.cleaner.dedupe.buffer.size"))
    wait_for(lambda: cleaner.config.backoff_ms == 15000, "the cleaner to take the defaults back")
    assert cleaner._throttle.rate == float("inf")


def _client_cert(d: Path, stem: str, cn: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(ca_key, hashes.SHA256())
    )
    (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _accepted(bootstrap: str, certs: Path, client: str) -> bool:
    """Does the mTLS listener accept a client with this certificate? (an ApiVersions round trip)"""
    from riverbed.cli.wire_client import WireClient

    security = {
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs / "ca1.pem"),
        "ssl.certificate.location": str(certs / f"{client}.pem"),
        "ssl.key.location": str(certs / f"{client}.key"),
        "ssl.endpoint.identification.algorithm": "none",
    }
    try:
        with WireClient(bootstrap, timeout=30, security=security):
            return True
    except Exception:  # refused during or right after the handshake (TLS 1.3)
        return False


def test_truststore_reload_changes_which_client_certificates_are_accepted(tmp_path: Path, topic_name: str) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca1, ca1_key = _ca("CA one")
    ca2, ca2_key = _ca("CA two")
    (certs / "ca1.pem").write_bytes(ca1.public_bytes(serialization.Encoding.PEM))
    (certs / "ca2.pem").write_bytes(ca2.public_bytes(serialization.Encoding.PEM))
    _server_cert(certs, "server", "broker", ca1, ca1_key)
    _client_cert(certs, "alice", "alice", ca1, ca1_key)
    _client_cert(certs, "bob", "bob", ca2, ca2_key)
    listeners = [ListenerConfig("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 0), ListenerConfig("SSL", "SSL", "127.0.0.1", 0)]
    settings = {"ssl_certificate_location": str(certs / "server.pem"), "ssl_key_location": str(certs / "server.key"), "ssl_ca_location": str(certs / "ca1.pem"), "ssl_client_auth": "required"}
    with EmbeddedBroker(tmp_path / "data", listeners=listeners, **settings) as b:
        ssl_bootstrap = b.bootstrap_for("SSL")
        assert _accepted(ssl_bootstrap, certs, "alice") and not _accepted(ssl_bootstrap, certs, "bob")
        admin = _admin(b.bootstrap)
        _alter(admin, "1", {"listener.name.ssl.ssl.truststore.location": str(certs / "ca2.pem")})
        assert _accepted(ssl_bootstrap, certs, "bob") and not _accepted(ssl_bootstrap, certs, "alice")
        # and a real client with bob's certificate produces over the listener
        mtls = {"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca1.pem"), "ssl.certificate.location": str(certs / "bob.pem"), "ssl.key.location": str(certs / "bob.key")}
        assert _produce(ssl_bootstrap, topic_name, 100, **mtls) is None
        del admin
        gc.collect()


def test_repeated_resource_or_name_is_an_invalid_request(broker: EmbeddedBroker) -> None:
    """Over the wire (the clients refuse such requests before sending them)."""
    from riverbed.cli.wire_client import WireClient
    from riverbed.protocol.messages.incremental_alter_configs import (
        IncrementalAlterConfigsRequest as Req,
    )
    from riverbed.protocol.messages.incremental_alter_configs import (
        IncrementalAlterConfigsResponse,
    )

    def resource(*names: str) -> Req.AlterConfigsResource:
        return Req.AlterConfigsResource(resource_type=4, resource_name="1", configs=[Req.AlterableConfig(name=n, config_operation=0, value="2000") for n in names])

    with WireClient(broker.bootstrap) as client:
        resp = client.request(Req(resources=[resource("message.max.bytes"), resource("log.segment.bytes")], validate_only=False), 1)
        assert isinstance(resp, IncrementalAlterConfigsResponse)
        assert [(r.error_code, r.error_message) for r in resp.responses] == [(42, "Each resource must appear at most once.")] * 2
        resp = client.request(Req(resources=[resource("message.max.bytes", "message.max.bytes")], validate_only=False), 1)
        assert isinstance(resp, IncrementalAlterConfigsResponse)
        assert [(r.error_code, r.error_message) for r in resp.responses] == [(42, "Error due to duplicate config keys")]
    assert _describe(_admin(broker.bootstrap), ConfigResource(BROKER, "1"))["message.max.bytes"].value == "1048588"
