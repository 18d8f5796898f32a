"""Dynamic broker configs, without a broker: Kafka's classification and messages, synonym
order, the durable store (including what it drops on load), and static settings read from
the config file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from riverbed.cli.config import load_config
from riverbed.metadata.broker_configs import (
    DYNAMIC_CONFIG_FILE,
    DynamicBrokerConfigStore,
    Layers,
    is_dynamic,
    is_sensitive,
    validate_dynamic,
)
from riverbed.metadata.configs import ConfigSource
from riverbed.protocol.errors import ErrorCode, KafkaError

LISTENERS = {"PLAINTEXT", "SSL"}


def _refused(props: dict[str, str], per_broker: bool = True) -> KafkaError:
    with pytest.raises(KafkaError) as info:
        validate_dynamic(props, per_broker, LISTENERS)
    assert info.value.code == ErrorCode.INVALID_CONFIG
    return info.value


def test_classification_follows_kafka_dynamic_update_modes() -> None:
    values = {"log.retention.ms": "1000", "log.segment.bytes": "1048576", "log.cleanup.policy": "compact", "message.max.bytes": "2000",
              "log.flush.interval.messages": "10", "log.cleaner.threads": "1", "log.cleaner.io.max.bytes.per.second": "1e6", "producer.id.expiration.ms": "1000"}  # fmt: skip
    for name, value in values.items():
        assert is_dynamic(name), name
        validate_dynamic({name: value}, False, LISTENERS)
    for name in ("auto.create.topics.enable", "num.partitions", "log.dirs", "listeners", "node.id", "log.retention.check.interval.ms", "socket.request.max.bytes"):
        assert not is_dynamic(name), name
        assert f"Cannot update these configs dynamically: Set({name})" in (_refused({name: "1"}).message or "")
    assert is_dynamic("listener.name.ssl.ssl.keystore.location")
    assert not is_dynamic("listener.name.ssl.ssl.client.auth")


def test_tls_files_only_per_broker_and_with_a_listener_prefix() -> None:
    validate_dynamic({"listener.name.ssl.ssl.keystore.location": "/a.pem"}, True, LISTENERS)
    msg = _refused({"listener.name.ssl.ssl.keystore.location": "/a.pem"}, per_broker=False).message or ""
    assert msg.startswith("Cannot update these configs at default cluster level, broker id must be specified")
    msg = _refused({"ssl.keystore.location": "/a.pem"}).message or ""
    assert msg.startswith("These security configs can be dynamically updated only per-listener using the listener prefix")
    assert "No such listener" in (_refused({"listener.name.nope.ssl.keystore.location": "/a.pem"}).message or "")
    assert "message.max.bytes" in (_refused({"message.max.bytes": "-5x"}).message or "")
    validate_dynamic({"some.plugin.setting": "x"}, False, LISTENERS)  # kept, as Kafka keeps custom configs
    assert is_sensitive("some.plugin.setting") and is_sensitive("listener.name.ssl.ssl.key.password")
    assert not is_sensitive("listener.name.ssl.ssl.keystore.location")


def test_synonyms_in_kafka_precedence_order() -> None:
    layers = Layers(
        dynamic_broker={"log.retention.ms": "1", "listener.name.ssl.ssl.key.password": "p"},
        dynamic_default={"log.retention.ms": "2"},
        static={"log.retention.ms": "3", "ssl.key.password": "q"},
        default={"log.retention.ms": "4"},
    )
    assert [(s.value, s.source) for s in layers.synonyms("log.retention.ms")] == [
        ("1", ConfigSource.DYNAMIC_BROKER_CONFIG),
        ("2", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("3", ConfigSource.STATIC_BROKER_CONFIG),
        ("4", ConfigSource.DEFAULT_CONFIG),
    ]
    # a listener override: the base setting follows; passwords are never shown
    assert [(s.name, s.value, s.source) for s in layers.synonyms("listener.name.ssl.ssl.key.password")] == [
        ("listener.name.ssl.ssl.key.password", None, ConfigSource.DYNAMIC_BROKER_CONFIG),
        ("ssl.key.password", None, ConfigSource.STATIC_BROKER_CONFIG),
    ]
    assert layers.value("log.retention.ms") == "1"


def test_store_persists_and_drops_what_is_no_longer_valid(tmp_path: Path) -> None:
    store = DynamicBrokerConfigStore(tmp_path, 1)
    store.replace("", {"log.retention.ms": "5000"})
    store.replace("1", {"message.max.bytes": "2000", "listener.name.ssl.ssl.key.password": "secret"})
    path = tmp_path / DYNAMIC_CONFIG_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # may hold key passwords
    again = DynamicBrokerConfigStore(tmp_path, 1)
    again.load(LISTENERS)
    assert again.default == {"log.retention.ms": "5000"}
    assert again.broker == {"message.max.bytes": "2000", "listener.name.ssl.ssl.key.password": "secret"}
    # edited by hand: a read-only setting and a bad value are ignored, the rest applies
    doc = json.loads(path.read_text())
    doc["default"].update({"num.partitions": "3", "log.segment.bytes": "tiny"})
    path.write_text(json.dumps(doc))
    third = DynamicBrokerConfigStore(tmp_path, 1)
    third.load(LISTENERS)
    assert third.default == {"log.retention.ms": "5000"}
    # another node id reads its own per-broker settings only
    other = DynamicBrokerConfigStore(tmp_path, 2)
    other.load(LISTENERS)
    assert other.broker == {} and other.default == {"log.retention.ms": "5000"}


def test_static_settings_by_kafka_name_from_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "riverbed.toml"
    f.write_text('node_id = 3\n[kafka]\n"log.retention.ms" = 1000\n"log.dirs" = "/srv/data"\n"ssl.allow.dn.changes" = true\n')
    cfg, _ = load_config(f, env={})
    assert cfg.node_id == 3 and str(cfg.data_dir) == "/srv/data" and cfg.ssl_allow_dn_changes
    assert cfg.static_settings["log.retention.ms"] == "1000"
    assert cfg.static_settings["node.id"] == "3" and cfg.static_settings["broker.id"] == "3"
    assert cfg.static_settings["log.dirs"] == "/srv/data"
