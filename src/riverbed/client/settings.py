"""Cluster settings: bootstrap servers, the client's security settings and the schema
registry's URL, from a TOML table, ``RIVERBED_*`` environment variables and flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# librdkafka settings a service passes through to every client it makes (Kafka's names)
PASSTHROUGH_PREFIXES = ("security.protocol", "sasl.", "ssl.", "client.id", "socket.", "reconnect.")


@dataclass(frozen=True)
class ClusterSettings:
    """How to reach a Kafka-compatible cluster (and, optionally, a schema registry)."""

    bootstrap: str = "127.0.0.1:9092"
    client: Mapping[str, Any] = field(default_factory=dict)  # security.protocol, sasl.*, ssl.*
    registry_url: str | None = None

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A librdkafka config: bootstrap.servers, the security settings, then `overrides`
        (Kafka's dotted names; a Python keyword may use underscores: group_id -> group.id)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, **self.client}
        for key, value in overrides.items():
            conf[key.replace("_", ".") if "." not in key and "_" in key else key] = value
        return conf

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ClusterSettings:
        """From a config table such as ``[cluster]`` in a service's TOML file::

            bootstrap.servers = "127.0.0.1:9092"     # or bootstrap = ...
            security.protocol = "SASL_SSL"
            sasl.mechanism = "SCRAM-SHA-256"
            schema.registry.url = "http://127.0.0.1:8081"

        Environment variables override the file: RIVERBED_BOOTSTRAP, RIVERBED_REGISTRY_URL and
        RIVERBED_CLIENT_<NAME> (RIVERBED_CLIENT_SASL_PASSWORD -> sasl.password).
        """
        env = os.environ if env is None else env
        flat = dict(_flatten(table))
        bootstrap = str(flat.pop("bootstrap.servers", flat.pop("bootstrap", "127.0.0.1:9092")))
        registry = flat.pop("schema.registry.url", flat.pop("registry", None))
        client = {k: v for k, v in flat.items() if k.startswith(PASSTHROUGH_PREFIXES)}
        unknown = sorted(set(flat) - set(client))
        if unknown:
            raise ValueError(f"unknown cluster settings: {', '.join(unknown)}")
        bootstrap = env.get("RIVERBED_BOOTSTRAP", bootstrap)
        registry = env.get("RIVERBED_REGISTRY_URL", registry)
        for name, value in env.items():
            if name.startswith("RIVERBED_CLIENT_"):
                client[name[len("RIVERBED_CLIENT_"):].lower().replace("_", ".")] = value
        return cls(bootstrap, client, None if registry is None else str(registry))

    @classmethod
    def from_args(cls, args: argparse.Namespace, table: Mapping[str, Any] | None = None) -> ClusterSettings:
        """From a config table, then the environment, then the flags of add_cluster_arguments."""
        base = cls.from_mapping(table or {})
        client = dict(base.client)
        for item in getattr(args, "client_config", None) or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--client-config wants NAME=VALUE, got {item!r}")
            client[key.strip()] = value
        bootstrap = getattr(args, "bootstrap", None) or base.bootstrap
        registry = getattr(args, "registry_url", None) or base.registry_url
        return cls(bootstrap, client, registry)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def add_cluster_arguments(parser: argparse.ArgumentParser, registry: bool = False) -> None:
    """--bootstrap, --client-config NAME=VALUE (repeatable) and, if asked, --registry-url."""
    parser.add_argument("-b", "--bootstrap", default=None, help="bootstrap servers (default 127.0.0.1:9092, or RIVERBED_BOOTSTRAP)")
    parser.add_argument("--client-config", action="append", metavar="NAME=VALUE", help="a Kafka client setting (security.protocol, sasl.*, ssl.*); repeatable")
    if registry:
        parser.add_argument("--registry-url", default=None, help="schema registry URL (or RIVERBED_REGISTRY_URL)")
