"""Entry point of the ``riverbed`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .config import ConfigError, load_config
from .embedded import ConsoleSettings, GatewaySettings, RegistrySettings, SqlSettings

if TYPE_CHECKING:
    from riverbed.app.metrics_http import MetricsSettings


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_group_parser(sub: Any, client: Callable[[argparse.ArgumentParser], None]) -> None:
    g = sub.add_parser("group", help="list, describe, delete consumer groups or reset their offsets")
    gsub = g.add_subparsers(dest="action", required=True)
    gl = gsub.add_parser("list")
    gl.add_argument("--state", action="append", help="only groups in this state (Stable, Empty, ...)")
    gd = gsub.add_parser("describe")
    gd.add_argument("group")
    gdel = gsub.add_parser("delete")
    gdel.add_argument("group")
    gr = gsub.add_parser("reset-offsets", help="move a group's committed offsets (the group must have no members)")
    gr.add_argument("group")
    gr.add_argument("--topic", required=True)
    target = gr.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument("--to-latest", action="store_true")
    target.add_argument("--to-datetime", help="ISO 8601, e.g. 2026-11-25T10:00:00+00:00")
    target.add_argument("--to-offset", type=int)
    gr.add_argument("--execute", action="store_true", help="apply (the default is a dry run that only prints)")
    for parser in (gl, gd, gdel, gr):
        client(parser)


def add_user_parser(sub: Any) -> None:
    u = sub.add_parser("user", help="add, list, delete SASL/SCRAM users")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="create a user or change its password")
    ua.add_argument("name")
    pw = ua.add_mutually_exclusive_group()
    pw.add_argument("--password", help="the password (visible to other local users in ps: prefer --password-stdin)")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ua.add_argument("--mechanism", action="append", choices=("SCRAM-SHA-256", "SCRAM-SHA-512"), help="repeat for several (default: both SCRAM mechanisms)")
    ua.add_argument("--iterations", type=int, default=4096, help="PBKDF2 iterations, 4096-16384 (default 4096)")
    ul = usub.add_parser("list", help="users and their SCRAM mechanisms")
    ud = usub.add_parser("delete", help="remove every SCRAM credential of a user")
    ud.add_argument("name")
    for parser in (ua, ul, ud):
        parser.add_argument("-b", "--bootstrap", default="127.0.0.1:9092", help="bootstrap server (default 127.0.0.1:9092)")
        parser.add_argument("--command-config", type=Path, help="client settings (KEY=VALUE lines): security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...")
        parser.add_argument("--data-dir", type=Path, help="edit DIR/credentials.json directly instead (the broker must be stopped)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``only="serve"`` builds just `serve`, so that starting the broker does
    not import what the other commands need (HTTP and Kafka clients, the toolkit)."""
    p = argparse.ArgumentParser(prog="riverbed", description="A Kafka-compatible event-streaming platform.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the broker (default 127.0.0.1:9092, data in ./riverbed-data)")
    s.add_argument("--config", type=Path, help="TOML config file")
    s.add_argument("--listen", help="HOST:PORT to listen on (env RIVERBED_LISTEN)")
    s.add_argument("--advertised", help="HOST:PORT clients should connect to (env RIVERBED_ADVERTISED)")
    s.add_argument("--data-dir", dest="data_dir", help="data directory (env RIVERBED_DATA_DIR)")
    s.add_argument("--node-id", dest="node_id", type=int)
    s.add_argument("--num-partitions", dest="num_partitions", type=int, help="partitions of auto-created topics")
    s.add_argument("--no-auto-create-topics", dest="auto_create_topics", action="store_const", const=False)
    s.add_argument("--max-open-segment-files", dest="max_open_segment_files", type=int, help="segment files kept open at most; idle ones are closed and reopened on use (env RIVERBED_MAX_OPEN_SEGMENT_FILES; default 0: 3/4 of ulimit -n, less 128)")
    s.add_argument("--no-flush-syncfs", dest="flush_syncfs", action="store_const", const=False, help="fsync each log only (no syncfs of the data dir's file system)")
    s.add_argument("--set", dest="kafka", action="append", type=_kv, default=[], metavar="KEY=VALUE", help="a Kafka broker setting, e.g. log.retention.ms=3600000")
    s.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")
    s.add_argument("--registry-listen", help="HOST:PORT of the embedded schema registry (default 127.0.0.1:8081; env RIVERBED_REGISTRY_LISTEN)")
    s.add_argument("--no-registry", action="store_true", help="do not start the embedded schema registry (env RIVERBED_REGISTRY=false)")
    s.add_argument("--metrics-listen", help="HOST:PORT of the Prometheus endpoint /metrics (default 127.0.0.1:9644; env RIVERBED_METRICS_LISTEN)")
    s.add_argument("--no-metrics", action="store_true", help="do not serve /metrics (env RIVERBED_METRICS=false)")
    s.add_argument("--console-listen", help="HOST:PORT of the embedded web console (default 127.0.0.1:8080; env RIVERBED_CONSOLE_LISTEN)")
    s.add_argument("--no-console", action="store_true", help="do not start the embedded web console (env RIVERBED_CONSOLE=false)")
    s.add_argument("--gateway", metavar="GATEWAY_TOML", help="also run the edge gateway with this gateway.toml (docs/gateway.md; env RIVERBED_GATEWAY_CONFIG)")
    s.add_argument("--with-sql", action="store_true", help="also run the SQL server, ksqlDB's REST API (docs/sql.md; env RIVERBED_SQL=true)")
    s.add_argument("--sql-listen", help="HOST:PORT of the SQL server (default 127.0.0.1:8088; env RIVERBED_SQL_LISTEN)")

    if only == "serve":
        return p

    from .acl_commands import add_acl_parser
    from .config_commands import add_config_parser
    from .console_commands import add_console_parser
    from .dlq_commands import add_dlq_parser
    from .schema_commands import add_schema_parser
    from .streams_commands import add_streams_parser

    def client(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-b", "--bootstrap", default="127.0.0.1:9092", help="bootstrap servers (default 127.0.0.1:9092)")

    add_streams_parser(sub, client)

    from .connect_commands import add_connect_parser  # riverbed connect (issue 13)

    add_connect_parser(sub)

    from .gateway_commands import add_gateway_parser

    add_gateway_parser(sub)

    from .sql_commands import add_sql_parser  # riverbed sql (SQL over streams)

    add_sql_parser(sub)

    t = sub.add_parser("topic", help="create, list, describe, delete or alter topics")
    tsub = t.add_subparsers(dest="action", required=True)
    tc = tsub.add_parser("create")
    tc.add_argument("name")
    tc.add_argument("-p", "--partitions", type=int, default=1)
    tc.add_argument("-r", "--replication-factor", dest="replication", type=int, default=1)
    tc.add_argument("-c", "--config", action="append", type=_kv, default=[], metavar="KEY=VALUE")
    tl = tsub.add_parser("list")
    tl.add_argument("--internal", action="store_true", help="include internal topics")
    td = tsub.add_parser("describe")
    td.add_argument("name")
    tdel = tsub.add_parser("delete")
    tdel.add_argument("name")
    ta = tsub.add_parser("alter")
    ta.add_argument("name")
    ta.add_argument("-c", "--config", action="append", type=_kv, default=[], metavar="KEY=VALUE", help="set a config")
    ta.add_argument("--delete-config", action="append", default=[], metavar="KEY", help="remove an override")
    ta.add_argument("-p", "--partitions", type=int, help="increase the partition count to this")
    for parser in (tc, tl, td, tdel, ta):
        client(parser)

    add_group_parser(sub, client)

    add_user_parser(sub)
    add_acl_parser(sub, client)
    add_config_parser(sub, client)

    x = sub.add_parser("txn", help="list and describe transactions, show a partition's producers")
    xsub = x.add_subparsers(dest="action", required=True)
    xl = xsub.add_parser("list")
    xl.add_argument("--state", action="append", help="only transactions in this state (Ongoing, CompleteCommit, ...)")
    xl.add_argument("--producer-id", action="append", type=int, help="only this producer id")
    xl.add_argument("--duration-ms", type=int, help="only transactions running for longer than this")
    xd = xsub.add_parser("describe")
    xd.add_argument("transactional_id")
    xp = xsub.add_parser("producers", help="the producers with state on a partition (DescribeProducers)")
    xp.add_argument("topic")
    xp.add_argument("-p", "--partition", type=int, action="append", help="partition (default 0; repeat for more)")
    for parser in (xl, xd, xp):
        client(parser)

    add_schema_parser(sub)
    add_console_parser(sub)
    add_dlq_parser(sub, client, _kv)
    from .share_commands import add_share_parser  # share groups (KIP-932)

    add_share_parser(sub, client)

    from .saga_commands import add_saga_parser  # riverbed.patterns sagas

    add_saga_parser(sub, client)

    rg = sub.add_parser("registry", help="run the schema registry (Confluent's REST API) against a cluster")
    client(rg)
    rg.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT for HTTP (default 127.0.0.1:8081)")
    rg.add_argument("--topic", default="_schemas", help="the registry's compacted topic (default _schemas)")
    rg.add_argument("--command-config", type=Path, help="client settings (KEY=VALUE lines): security.protocol, sasl.*, ssl.*")
    rg.add_argument("--log-level", default="WARNING")

    pr = sub.add_parser("produce", help="produce records: --value, or one per stdin line")
    client(pr)
    pr.add_argument("topic")
    pr.add_argument("-k", "--key", help="record key")
    pr.add_argument("-v", "--value", help="record value (otherwise read lines from stdin)")
    pr.add_argument("-H", "--header", action="append", type=_kv, default=[], metavar="KEY=VALUE")
    pr.add_argument("-K", "--key-separator", help="split each stdin line into key and value at this separator")
    pr.add_argument("-p", "--partition", type=int, help="partition (default: by key)")
    pr.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    pr.add_argument("--acks", default="all", choices=["0", "1", "all"])

    co = sub.add_parser("consume", help="print records of a topic")
    client(co)
    co.add_argument("topic")
    co.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (default: the end)")
    co.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")
    co.add_argument("-p", "--partition", type=int, action="append", help="only these partitions")
    co.add_argument("-o", "--offset", type=int, help="start at this offset (with --partition)")
    co.add_argument("-n", "--max-messages", type=int, help="stop after this many records")
    co.add_argument("--format", choices=["text", "json"], default="text")
    co.add_argument("--timeout", type=float, default=2.0, help="without --follow, stop after this many idle seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only="serve" if argv[:1] == ["serve"] else None).parse_args(argv)
    if args.command == "serve":
        flags = {k: getattr(args, k) for k in ("listen", "advertised", "data_dir", "node_id", "num_partitions", "auto_create_topics", "log_level", "flush_syncfs", "max_open_segment_files")}
        try:
            config, level = load_config(args.config, flags=flags, kafka_flags=dict(args.kafka))
        except ConfigError as exc:
            print(f"riverbed: {exc}", file=sys.stderr)
            return 2
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        import os

        from .serve import run

        gateway = GatewaySettings(args.gateway or os.environ.get("RIVERBED_GATEWAY_CONFIG") or None)
        return run(config, _registry_settings(args), _metrics_settings(args), _service_settings(args, ConsoleSettings(), "console"), gateway, _sql_settings(args))
    if args.command == "registry":
        return _registry(args)
    if args.command == "console":
        from .console_commands import console_command

        return console_command(args)
    if args.command == "connect":  # riverbed connect (issue 13)
        from . import connect_commands

        return connect_commands.dispatch(args)
    if args.command == "gateway":
        from .gateway_commands import gateway_command

        return gateway_command(args)
    if args.command == "sql":  # riverbed sql (SQL over streams)
        from .sql_commands import sql_command

        return sql_command(args)
    if args.command == "schema":
        from . import schema_commands

        try:
            return schema_commands.dispatch(args)
        except (schema_commands.SchemaCommandError, OSError) as exc:
            print(f"riverbed: {exc}", file=sys.stderr)
            return 1
    if args.command == "saga":  # riverbed.patterns sagas
        from . import saga_commands

        return saga_commands.run(args)
    logging.basicConfig(level=logging.WARNING)
    from . import client_commands

    if args.command == "share-group":  # share groups (KIP-932)
        from .share_commands import share_command

        try:
            return share_command(args)
        except (client_commands.CommandError, OSError) as exc:
            print(f"riverbed: {exc}", file=sys.stderr)
            return 1

    try:
        return client_commands.dispatch(args)
    except client_commands.CommandError as exc:
        print(f"riverbed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class _ServiceSettings(Protocol):
    enabled: bool
    listen: str


_S = TypeVar("_S", bound=_ServiceSettings)


def _service_settings(args: argparse.Namespace, settings: _S, name: str) -> _S:
    """A service `riverbed serve` runs beside the broker (`name`: registry, metrics): the
    [name] table of the config file, then RIVERBED_NAME / RIVERBED_NAME_LISTEN, then the
    --name-listen / --no-name flags (later wins)."""
    import os
    import tomllib

    if args.config is not None:
        table = tomllib.loads(args.config.read_text()).get(name, {})
        settings.enabled = bool(table.get("enabled", settings.enabled))
        settings.listen = str(table.get("listen", settings.listen))
    env = f"RIVERBED_{name.upper()}"
    if os.environ.get(env, "").lower() in ("false", "0", "no", "off"):
        settings.enabled = False
    settings.listen = os.environ.get(f"{env}_LISTEN", settings.listen)
    if getattr(args, f"{name}_listen"):
        settings.listen = getattr(args, f"{name}_listen")
    if getattr(args, f"no_{name}"):
        settings.enabled = False
    return settings


def _sql_settings(args: argparse.Namespace) -> SqlSettings:
    """The SQL server is off by default: on with `[sql] enabled = true`, RIVERBED_SQL=true or
    --with-sql; its address from `[sql] listen`, RIVERBED_SQL_LISTEN, --sql-listen."""
    import os

    settings = SqlSettings()
    args.no_sql = False
    settings = _service_settings(args, settings, "sql")
    if os.environ.get("RIVERBED_SQL", "").lower() in ("true", "1", "yes", "on"):
        settings.enabled = True
    if args.with_sql:
        settings.enabled = True
    return settings


def _registry_settings(args: argparse.Namespace) -> RegistrySettings:
    return _service_settings(args, RegistrySettings(), "registry")


def _metrics_settings(args: argparse.Namespace) -> MetricsSettings:
    from riverbed.app.metrics_http import MetricsSettings

    return _service_settings(args, MetricsSettings(), "metrics")


def _registry(args: argparse.Namespace) -> int:
    from riverbed.registry.service import RegistryConfig, run

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client: dict[str, str] = {}
    if args.command_config is not None:
        for line in args.command_config.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                client[key.strip()] = value.strip()
    return run(RegistryConfig(bootstrap=args.bootstrap, listen=args.listen, topic=args.topic, client=client))


if __name__ == "__main__":
    sys.exit(main())
