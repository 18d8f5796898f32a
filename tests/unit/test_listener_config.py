from __future__ import annotations

import pytest

from riverbed.broker import BrokerConfig, ListenerConfig
from riverbed.cli.config import ConfigError, load_config


def test_default_is_one_plaintext_listener() -> None:
    cfg, _ = load_config(env={}, flags={"listen": "0.0.0.0:9093", "advertised": "broker.example:19093"})
    [lst] = cfg.effective_listeners()
    assert (lst.name, lst.protocol, lst.host, lst.port) == ("PLAINTEXT", "PLAINTEXT", "0.0.0.0", 9093)
    assert lst.advertised(9093) == ("broker.example", 19093)
    assert BrokerConfig().effective_listeners()[0].advertised(9092) == ("127.0.0.1", 9092)


def test_kafka_listener_settings() -> None:
    cfg, _ = load_config(
        env={},
        kafka_flags={
            "listeners": "PLAINTEXT://:9092,CLIENT://127.0.0.1:9094,SSL://[::1]:9093",
            "advertised.listeners": "CLIENT://kafka.example.com:19094",
            "listener.security.protocol.map": "CLIENT:SASL_SSL",
            "ssl.keystore.location": "/x/server.pem",
            "ssl.key.location": "/x/server.key",
            "ssl.truststore.location": "/x/ca.pem",
            "ssl.client.auth": "required",
            "sasl.enabled.mechanisms": "scram-sha-512,PLAIN",
        },
    )
    assert [(x.name, x.protocol, x.host, x.port) for x in cfg.listeners] == [
        ("PLAINTEXT", "PLAINTEXT", "0.0.0.0", 9092),
        ("CLIENT", "SASL_SSL", "127.0.0.1", 9094),
        ("SSL", "SSL", "::1", 9093),
    ]
    assert cfg.listeners[1].advertised(9094) == ("kafka.example.com", 19094)
    assert cfg.listeners[0].advertised(9092) == ("127.0.0.1", 9092)
    assert (cfg.ssl_certificate_location, cfg.ssl_ca_location, cfg.ssl_client_auth) == ("/x/server.pem", "/x/ca.pem", "required")
    assert cfg.sasl_enabled_mechanisms == ("SCRAM-SHA-512", "PLAIN")
    assert isinstance(cfg.listeners[0], ListenerConfig)


@pytest.mark.parametrize(
    "settings",
    [
        {"listeners": "CLIENT://:9094"},  # not in the protocol map
        {"listeners": "PLAINTEXT://:9092,PLAINTEXT://:9093"},
        {"listeners": "PLAINTEXT:9092"},
        {"listeners": "PLAINTEXT://:9092", "advertised.listeners": "OTHER://h:1"},
        {"listeners": "SSL://:9093"},  # no certificate
        {"advertised.listeners": "PLAINTEXT://h:1"},
        {"ssl.client.auth": "sometimes"},
        {"sasl.enabled.mechanisms": "GSSAPI"},
        {"ssl.principal.mapping.rules": "RULE:broken"},
    ],
)
def test_bad_listener_settings(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, kafka_flags=settings)


def test_listen_and_listeners_conflict() -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, flags={"listen": "127.0.0.1:9092"}, kafka_flags={"listeners": "PLAINTEXT://:9092"})
