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


def test_per_listener_security_settings() -> None:
    cfg, _ = load_config(
        env={},
        kafka_flags={
            "listeners": "SSL://:9093,CLIENT://:9094,INTERNAL://:9095",
            "listener.security.protocol.map": "SSL:SSL,CLIENT:SASL_SSL,INTERNAL:SASL_PLAINTEXT",
            "ssl.keystore.location": "/x/server.pem",
            "ssl.key.location": "/x/server.key",
            "ssl.truststore.location": "/x/ca.pem",
            "ssl.client.auth": "required",
            "listener.name.client.ssl.client.auth": "requested",
            "listener.name.client.ssl.keystore.location": "/y/client-listener.pem",
            "listener.name.internal.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.ssl.ssl.principal.mapping.rules": "RULE:^CN=(.*?),.*$/$1/,DEFAULT",
        },
    )
    ssl_l, client, internal = (cfg.listener_security(x) for x in cfg.listeners)
    assert (ssl_l.client_auth, ssl_l.certificate, ssl_l.principal_mapping_rules) == ("required", "/x/server.pem", "RULE:^CN=(.*?),.*$/$1/,DEFAULT")
    assert (client.client_auth, client.certificate, client.key, client.ca) == ("requested", "/y/client-listener.pem", "/x/server.key", "/x/ca.pem")
    assert internal.sasl_mechanisms == ("SCRAM-SHA-512",)
    assert client.sasl_mechanisms == ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")  # the broker-wide default
    # the broker-wide ssl.client.auth does not apply to SASL_SSL listeners (as in Kafka)
    cfg2, _ = load_config(env={}, kafka_flags={"listeners": "SASL_SSL://:9094", "ssl.keystore.location": "/x/s.pem", "ssl.truststore.location": "/x/ca.pem", "ssl.client.auth": "required"})
    assert cfg2.listener_security(cfg2.listeners[0]).client_auth == "none"


@pytest.mark.parametrize(
    "settings",
    [
        {"listener.name.nope.ssl.client.auth": "required"},  # no such listener
        {"listener.name.plaintext.ssl.client.auth": "sometimes"},
        {"listener.name.plaintext.sasl.enabled.mechanisms": "GSSAPI"},
        {"listener.name.plaintext.ssl.principal.mapping.rules": "RULE:broken"},
        {"listener.name.plaintext.scram-sha-256.sasl.jaas.config": "x"},  # not supported
        {"listener.name.ssl.ssl.client.auth": "required"},  # and no CA for client certificates
    ],
)
def test_bad_per_listener_settings(settings: dict[str, str]) -> None:
    base = {"listeners": "PLAINTEXT://:9092,SSL://:9093", "listener.name.ssl.ssl.keystore.location": "/x/s.pem"}
    with pytest.raises(ConfigError):
        load_config(env={}, kafka_flags={**base, **settings})
