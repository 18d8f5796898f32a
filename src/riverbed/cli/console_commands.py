"""``riverbed console``: the web console against any Kafka-compatible cluster."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

from riverbed.client import ClusterSettings, add_cluster_arguments


def add_console_parser(sub: Any) -> None:
    c = sub.add_parser("console", help="run the web console against a cluster (http://127.0.0.1:8080)")
    add_cluster_arguments(c, registry=True)
    c.add_argument("--listen", default=None, help="HOST:PORT for HTTP (default 127.0.0.1:8080; env RIVERBED_CONSOLE_LISTEN)")
    c.add_argument("--config", type=Path, help="TOML file: [cluster] (bootstrap.servers, security.protocol, sasl.*, schema.registry.url) and [console] (listen, refresh.seconds, read.only)")
    c.add_argument("--refresh", type=float, default=None, help="seconds between refreshes of the topic and group lists (default 5)")
    c.add_argument("--read-only", action="store_true", help="no page changes anything (no create, alter, delete, produce, reset, register)")
    c.add_argument("--login", action="store_true", help="ask for a SASL/SCRAM user and password; each person acts on the cluster as that user (needs security.protocol=SASL_* and sasl.mechanism)")
    c.add_argument("--admin", action="append", default=[], metavar="USER", help="with --login: this user has the admin role (may change things); others are read-only. Repeatable")
    c.add_argument("--log-level", default="WARNING")


def console_command(args: argparse.Namespace) -> int:
    import os

    from riverbed.console import ConsoleConfig, run

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    doc: dict[str, Any] = tomllib.loads(args.config.read_text()) if args.config else {}
    table = doc.get("console", {})
    try:
        cluster = ClusterSettings.from_args(args, doc.get("cluster", {}))
    except ValueError as exc:
        print(f"riverbed: {exc}", file=sys.stderr)
        return 2
    listen = args.listen or os.environ.get("RIVERBED_CONSOLE_LISTEN") or str(table.get("listen", "127.0.0.1:8080"))
    refresh = args.refresh if args.refresh is not None else float(table.get("refresh", {}).get("seconds", 5.0) if isinstance(table.get("refresh"), dict) else 5.0)
    if refresh <= 0:
        print("riverbed: --refresh must be positive", file=sys.stderr)
        return 2
    read_only = args.read_only or bool(table.get("read", {}).get("only", False) if isinstance(table.get("read"), dict) else False)
    login = args.login or bool(table.get("login", False))
    admins = frozenset([*args.admin, *table.get("admins", [])])
    try:
        config = ConsoleConfig(cluster=cluster, refresh_s=refresh, read_only=read_only, login=login, admins=admins)
        return run(config, listen)
    except ValueError as exc:
        print(f"riverbed: {exc}", file=sys.stderr)
        return 2
