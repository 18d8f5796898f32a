"""Connector configuration, with Debezium's property names where Debezium has one.

A ``cdc.toml`` holds a ``[cluster]`` table (riverbed.client.ClusterSettings) and one or more
``[[connector]]`` tables; dotted TOML keys are the property names::

    [[connector]]
    name = "inventory"
    database.hostname = "127.0.0.1"
    database.password = "${env:PGPASSWORD}"      # or "${file:/run/secrets/pg}"
    topic.prefix = "dbserver1"
    table.include.list = "public.customers,public.orders"

Secrets (``database.password``) are read from the environment or a file and never logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["ConfigError", "ConnectorConfig", "OutboxConfig", "resolve_secret"]

SNAPSHOT_MODES = ("initial", "no_data", "when_needed", "initial_only", "never")
AUTOCREATE_MODES = ("all_tables", "filtered", "disabled")
LAG_ACTIONS = ("warn", "stop", "drop")
EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"


class ConfigError(ValueError):
    pass


class ConnectorError(Exception):
    """A condition the connector will not retry (configuration, lost position, refused schema)."""


CONVERTERS = {"json": "json", "org.apache.kafka.connect.json.JsonConverter": "json",
              "avro": "avro", "io.confluent.connect.avro.AvroConverter": "avro"}


def resolve_secret(value: str) -> str:
    """``${env:NAME}`` -> the environment variable, ``${file:/path}`` -> the file's text (stripped)."""
    m = re.fullmatch(r"\$\{(env|file):(.+)\}", value.strip())
    if not m:
        return value
    kind, ref = m.groups()
    if kind == "env":
        if ref not in os.environ:
            raise ConfigError(f"secret: environment variable {ref} is not set")
        return os.environ[ref]
    try:
        return Path(ref).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"secret: cannot read {ref}: {exc.strerror}") from None


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class OutboxConfig:
    """Debezium's EventRouter settings (``transforms.<name>.*``)."""

    field_event_id: str = "id"
    field_event_key: str = "aggregateid"
    field_event_type: str = "type"
    field_payload: str = "payload"
    route_by_field: str = "aggregatetype"
    route_topic_replacement: str = "outbox.event.${routedByValue}"
    additional_placement: tuple[tuple[str, str, str], ...] = ()  # (column, "header"|"envelope", alias)
    expand_json_payload: bool = False
    delete_after_capture: bool = False  # riverbed's: DELETE the outbox row once its record is acked
    table: str | None = None  # the outbox table "schema.table" (default: every captured table)

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> OutboxConfig:
        placement = []
        for item in filter(None, (s.strip() for s in str(props.get("table.fields.additional.placement", "")).split(","))):
            parts = item.split(":")
            if len(parts) not in (2, 3) or parts[1] not in ("header", "envelope"):
                raise ConfigError(f"table.fields.additional.placement: bad entry {item!r} (column:header|envelope[:alias])")
            placement.append((parts[0], parts[1], parts[2] if len(parts) == 3 else parts[0]))
        return cls(
            field_event_id=props.get("table.field.event.id", "id"),
            field_event_key=props.get("table.field.event.key", "aggregateid"),
            field_event_type=props.get("table.field.event.type", "type"),
            field_payload=props.get("table.field.event.payload", "payload"),
            route_by_field=props.get("route.by.field", "aggregatetype"),
            route_topic_replacement=props.get("route.topic.replacement", "outbox.event.${routedByValue}"),
            additional_placement=tuple(placement),
            expand_json_payload=str(props.get("table.expand.json.payload", "false")).lower() == "true",
            delete_after_capture=str(props.get("delete.after.capture", "false")).lower() == "true",
            table=props.get("table.name"),
        )


def _bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1", "yes", "on")


@dataclass(frozen=True)
class ConnectorConfig:
    name: str
    topic_prefix: str
    hostname: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    dbname: str = "postgres"
    dsn: str | None = field(default=None, repr=False)  # a full libpq conninfo instead of the above
    slot_name: str = "debezium"
    publication_name: str = "dbz_publication"
    publication_autocreate_mode: str = "all_tables"
    table_include_list: tuple[str, ...] = ()
    table_exclude_list: tuple[str, ...] = ()
    snapshot_mode: str = "initial"
    decimal_handling_mode: str = "precise"
    key_schemas: bool = True
    value_schemas: bool = True
    key_converter: str = "json"  # json | avro
    value_converter: str = "json"
    registry_url: str | None = None  # value.converter.schema.registry.url (else the cluster's)
    tombstones_on_delete: bool = True
    skipped_operations: frozenset[str] = frozenset({"t"})
    table_without_primary_key: str = "skip"  # skip | full (ALTER TABLE ... REPLICA IDENTITY FULL)
    heartbeat_interval_ms: int = 0
    heartbeat_action_query: str | None = None
    heartbeat_topic_prefix: str = "__debezium-heartbeat"
    offset_storage_topic: str = "riverbed-connect-offsets"
    offset_flush_interval_ms: int = 1000
    status_update_interval_ms: int = 1000
    slot_max_lag_bytes: int = 0  # 0: no limit
    slot_lag_action: str = "warn"  # warn | stop | drop
    slot_lag_check_interval_ms: int = 5000
    slot_drop_on_stop: bool = False
    topic_partitions: int = 1
    topic_replication_factor: int = -1
    producer: Mapping[str, Any] = field(default_factory=dict)
    outbox: OutboxConfig | None = None
    unknown: tuple[str, ...] = ()

    def conninfo(self) -> str:
        if self.dsn:
            return self.dsn if self.password is None else psycopg.conninfo.make_conninfo(self.dsn, password=self.password)
        kw: dict[str, Any] = {"host": self.hostname, "port": str(self.port), "user": self.user, "dbname": self.dbname}
        if self.password is not None:
            kw["password"] = self.password
        return psycopg.conninfo.make_conninfo("", **kw)

    def redacted(self) -> dict[str, Any]:
        """The settings without secrets (for logs and `riverbed connect status`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("password", "dsn", "producer")}
        out["password"] = None if self.password is None else "********"
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> ConnectorConfig:
        p = {k: v for k, v in flatten(props).items()}
        known: set[str] = set()

        def get(name: str, default: Any = None) -> Any:
            known.add(name)
            return p.get(name, default)

        name = get("name")
        if not name:
            raise ConfigError("connector: 'name' is required")
        prefix = get("topic.prefix", get("database.server.name"))
        if not prefix:
            raise ConfigError(f"connector {name}: 'topic.prefix' is required")
        plugin = get("plugin.name", "pgoutput")
        if plugin != "pgoutput":
            raise ConfigError(f"connector {name}: plugin.name {plugin!r} is not supported (pgoutput only)")
        get("connector.class")
        password = get("database.password")
        snapshot_mode = get("snapshot.mode", "initial")
        if snapshot_mode not in SNAPSHOT_MODES:
            raise ConfigError(f"connector {name}: snapshot.mode must be one of {', '.join(SNAPSHOT_MODES)}")
        autocreate = get("publication.autocreate.mode", "all_tables")
        if autocreate not in AUTOCREATE_MODES:
            raise ConfigError(f"connector {name}: publication.autocreate.mode must be one of {', '.join(AUTOCREATE_MODES)}")
        decimal = get("decimal.handling.mode", "precise")
        if decimal not in ("precise", "string", "double"):
            raise ConfigError(f"connector {name}: decimal.handling.mode must be precise, string or double")
        action = get("slot.lag.action", "warn")
        if action not in LAG_ACTIONS:
            raise ConfigError(f"connector {name}: slot.lag.action must be warn, stop or drop")
        nopk = get("table.without.primary.key", "skip")
        if nopk not in ("skip", "full"):
            raise ConfigError(f"connector {name}: table.without.primary.key must be skip or full")
        skipped = str(get("skipped.operations", "t"))
        ops = frozenset() if skipped.strip() == "none" else frozenset(x.strip() for x in skipped.split(",") if x.strip())
        if not ops <= {"c", "u", "d", "t"}:
            raise ConfigError(f"connector {name}: skipped.operations takes c, u, d, t or none")
        conv = {}
        for part in ("key", "value"):
            raw = str(get(f"{part}.converter", "json"))
            if raw not in CONVERTERS:
                raise ConfigError(f"connector {name}: {part}.converter {raw!r}: json or avro (JsonConverter, AvroConverter)")
            conv[part] = CONVERTERS[raw]
        registry_url = get("value.converter.schema.registry.url", get("key.converter.schema.registry.url"))
        outbox = None
        transforms = [t.strip() for t in str(get("transforms", "")).split(",") if t.strip()]
        for t in transforms:
            sub = {k[len(f"transforms.{t}.") :]: str(v) for k, v in p.items() if k.startswith(f"transforms.{t}.")}
            known.update(f"transforms.{t}.{k}" for k in sub)
            if sub.get("type") != EVENT_ROUTER:
                raise ConfigError(f"connector {name}: transform {t}: only {EVENT_ROUTER} is supported")
            outbox = OutboxConfig.from_props(sub)
        producer = {k[len("producer.override.") :]: v for k, v in p.items() if k.startswith("producer.override.")}
        known.update(f"producer.override.{k}" for k in producer)

        def lst(key: str) -> tuple[str, ...]:
            return tuple(x.strip() for x in str(get(key, "")).split(",") if x.strip())

        cfg = cls(
            name=str(name),
            topic_prefix=str(prefix),
            hostname=str(get("database.hostname", "127.0.0.1")),
            port=int(get("database.port", 5432)),
            user=str(get("database.user", "postgres")),
            password=None if password is None else resolve_secret(str(password)),
            dbname=str(get("database.dbname", "postgres")),
            dsn=get("database.dsn"),
            slot_name=str(get("slot.name", "debezium")),
            publication_name=str(get("publication.name", "dbz_publication")),
            publication_autocreate_mode=autocreate,
            table_include_list=lst("table.include.list"),
            table_exclude_list=lst("table.exclude.list"),
            snapshot_mode=snapshot_mode,
            decimal_handling_mode=decimal,
            key_schemas=_bool(get("key.converter.schemas.enable", True)),
            value_schemas=_bool(get("value.converter.schemas.enable", True)),
            key_converter=conv["key"],
            value_converter=conv["value"],
            registry_url=None if registry_url is None else str(registry_url),
            tombstones_on_delete=_bool(get("tombstones.on.delete", True)),
            skipped_operations=ops,
            table_without_primary_key=nopk,
            heartbeat_interval_ms=int(get("heartbeat.interval.ms", 0)),
            heartbeat_action_query=get("heartbeat.action.query"),
            heartbeat_topic_prefix=str(get("topic.heartbeat.prefix", "__debezium-heartbeat")),
            offset_storage_topic=str(get("offset.storage.topic", "riverbed-connect-offsets")),
            offset_flush_interval_ms=int(get("offset.flush.interval.ms", 1000)),
            status_update_interval_ms=int(get("status.update.interval.ms", 1000)),
            slot_max_lag_bytes=int(get("slot.max.lag.bytes", 0)),
            slot_lag_action=action,
            slot_lag_check_interval_ms=int(get("slot.lag.check.interval.ms", 5000)),
            slot_drop_on_stop=_bool(get("slot.drop.on.stop", False)),
            topic_partitions=int(get("topic.creation.default.partitions", 1)),
            topic_replication_factor=int(get("topic.creation.default.replication.factor", -1)),
            producer=producer,
            outbox=outbox,
            unknown=tuple(sorted(set(p) - known)),
        )
        from .replication import check_name

        try:
            check_name(cfg.slot_name)
            check_name(cfg.publication_name, "publication")
        except ValueError as exc:
            raise ConfigError(f"connector {name}: {exc}") from None
        return cfg
