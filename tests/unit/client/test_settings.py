import argparse

import pytest

from riverbed.client import ClusterSettings, add_cluster_arguments


def test_from_mapping_reads_kafka_names_nested_or_flat() -> None:
    s = ClusterSettings.from_mapping({"bootstrap": {"servers": "h:1"}, "security.protocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN"}, "schema.registry.url": "http://r"}, env={})
    assert s.bootstrap == "h:1" and s.registry_url == "http://r"
    assert s.client == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


def test_environment_overrides_the_file() -> None:
    env = {"RIVERBED_BOOTSTRAP": "e:2", "RIVERBED_CLIENT_SASL_PASSWORD": "pw", "RIVERBED_REGISTRY_URL": "http://e"}
    s = ClusterSettings.from_mapping({"bootstrap.servers": "f:1"}, env=env)
    assert (s.bootstrap, s.registry_url, s.client["sasl.password"]) == ("e:2", "http://e", "pw")


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(ValueError, match="bootstrp"):
        ClusterSettings.from_mapping({"bootstrp": "x"}, env={})


def test_client_config_overrides_with_kafka_or_python_names() -> None:
    s = ClusterSettings("b:1", {"security.protocol": "SSL"})
    assert s.client_config(group_id="g", **{"auto.offset.reset": "earliest"}) == {
        "bootstrap.servers": "b:1", "security.protocol": "SSL", "group.id": "g", "auto.offset.reset": "earliest"}


def test_flags_win_over_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVERBED_BOOTSTRAP", raising=False)
    p = argparse.ArgumentParser()
    add_cluster_arguments(p, registry=True)
    args = p.parse_args(["-b", "flag:9", "--client-config", "sasl.username=u", "--registry-url", "http://f"])
    s = ClusterSettings.from_args(args, {"bootstrap": "file:1", "sasl.username": "x"})
    assert (s.bootstrap, s.client["sasl.username"], s.registry_url) == ("flag:9", "u", "http://f")
    with pytest.raises(ValueError):
        ClusterSettings.from_args(p.parse_args(["--client-config", "novalue"]))
