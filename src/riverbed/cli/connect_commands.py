"""``riverbed connect run|status|offsets|reset CONFIG.toml``: PostgreSQL CDC connectors
(riverbed.connect) from a config file with a ``[cluster]`` table and ``[[connector]]`` tables."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any


def add_connect_parser(sub: Any) -> None:
    c = sub.add_parser("connect", help="change data capture from PostgreSQL into topics (Debezium-compatible)")
    csub = c.add_subparsers(dest="action", required=True)
    r = csub.add_parser("run", help="run the connectors of a config file until interrupted")
    r.add_argument("config", type=Path)
    r.add_argument("--log-level", default="INFO")
    r.add_argument("--listen", metavar="HOST:PORT", help="serve /metrics (Prometheus) and GET /connectors[/NAME[/status]] (Kafka Connect's REST shape) here")
    s = csub.add_parser("status", help="slot, lag (bytes and seconds) and offsets of each connector")
    s.add_argument("config", type=Path)
    s.add_argument("--json", action="store_true")
    o = csub.add_parser("offsets", help="the stored offsets of the config's connectors")
    o.add_argument("config", type=Path)
    x = csub.add_parser("reset", help="forget a connector's offsets and drop its slot (the next run starts over)")
    x.add_argument("config", type=Path)
    x.add_argument("--connector", help="only this connector (default: all of the file)")
    x.add_argument("--keep-slot", action="store_true", help="keep the replication slot")


def load(path: Path) -> tuple[Any, list[Any]]:
    from riverbed.client import ClusterSettings
    from riverbed.connect.config import ConnectorConfig

    table = tomllib.loads(path.read_text())
    cluster = ClusterSettings.from_mapping(table.get("cluster", {}))
    raw = table.get("connector", [])
    raw = [raw] if isinstance(raw, dict) else raw
    if not raw:
        raise ValueError(f"{path}: no [[connector]] table")
    configs = [ConnectorConfig.from_props(c) for c in raw]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: connector names must be unique")
    return cluster, configs


def dispatch(args: argparse.Namespace) -> int:
    from riverbed.connect.config import ConfigError

    try:
        cluster, configs = load(args.config)
    except (OSError, ValueError, ConfigError, tomllib.TOMLDecodeError) as exc:
        print(f"riverbed: {exc}", file=sys.stderr)
        return 2
    for cfg in configs:
        if cfg.unknown:
            print(f"riverbed: connector {cfg.name}: unknown settings ignored: {', '.join(cfg.unknown)}", file=sys.stderr)
    try:
        if args.action == "run":
            return run(cluster, configs, args.log_level, args.listen)
        if args.action == "status":
            return status(cluster, configs, args.json)
        if args.action == "offsets":
            return offsets(cluster, configs)
        return reset(cluster, configs, args.connector, args.keep_slot)
    except Exception as exc:
        print(f"riverbed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run(cluster: Any, configs: list[Any], level: str, listen: str | None = None) -> int:
    from riverbed.connect.connector import ConnectorError, PostgresConnector

    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("riverbed.connect")
    connectors = [PostgresConnector(cfg, cluster) for cfg in configs]
    failures: list[str] = []

    def body(c: PostgresConnector) -> None:
        log.info("connector %s: starting %s", c.cfg.name, {k: v for k, v in c.cfg.redacted().items() if v not in (None, (), {})})
        try:
            c.run_forever()
        except ConnectorError as exc:
            log.error("connector %s stopped: %s", c.cfg.name, exc)
            failures.append(c.cfg.name)

    def on_signal(_sig: int, _frame: Any) -> None:
        for c in connectors:
            c.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    http = None
    if listen:
        from riverbed.connect.http import connect_app
        from riverbed.web import HttpServer

        host, _, port = listen.rpartition(":")
        http = HttpServer(connect_app(connectors), host or "127.0.0.1", int(port)).start_in_thread()
        log.info("serving /metrics and /connectors on %s", http.url)
    threads = [threading.Thread(target=body, args=(c,), name=f"connect-{c.cfg.name}", daemon=True) for c in connectors]
    reporter = connector_reporter(cluster, connectors, f"{http.url}/metrics" if http is not None else None).start()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    # stopped by a signal: the connectors leave the list; failed ones stay, as failed
    reporter.stop(clean=not failures)
    if http is not None:
        http.stop()
    return 1 if failures else 0


def connector_reporter(cluster: Any, connectors: list[Any], metrics_url: str | None) -> Any:
    """Each connector reports in (docs/adr/0015-services-report-in.md): state and figures."""
    from riverbed.client.status import Status, StatusReporter

    def source() -> list[Status]:
        out = []
        for c in connectors:
            st = c.stats
            figures = {"changes": st.changes, "records": st.records, "transactions": st.transactions,
                       "snapshot_rows": st.snapshot_rows, "lag_bytes": st.lag_bytes, "lag_seconds": st.lag_seconds,
                       "paused": c.paused.is_set()}
            out.append(Status("connect", c.cfg.name, st.state, figures, metrics_url))
        return out

    return StatusReporter(cluster.client_config(), source)


def _status_of(cluster: Any, cfg: Any, stored: dict[bytes, Any]) -> dict[str, Any]:
    import psycopg

    from riverbed.connect.catalog import Catalog
    from riverbed.connect.offsets import OffsetStore
    from riverbed.connect.pgoutput import format_lsn

    key = OffsetStore(cluster, cfg.offset_storage_topic, cfg.name, cfg.topic_prefix).key
    off = stored.get(key)
    out: dict[str, Any] = {"connector": cfg.name, "slot": cfg.slot_name, "publication": cfg.publication_name}
    with psycopg.connect(cfg.conninfo(), autocommit=True, connect_timeout=10) as conn:
        slot = Catalog(conn).slot(cfg.slot_name)
    out["slot_exists"] = slot.exists
    if slot.exists:
        out.update(slot_active=slot.active, wal_status=slot.wal_status, lag_bytes=slot.lag_bytes, retained_wal_bytes=slot.retained_bytes,
                   confirmed_flush_lsn=None if slot.confirmed_flush_lsn is None else format_lsn(slot.confirmed_flush_lsn))
    out["offset_lsn"] = None if not off else format_lsn(int(off.get("lsn", 0)))
    out["snapshot_completed"] = None if not off else bool(off.get("snapshot_completed", True))
    lag_s = None
    if off and slot.lag_bytes:
        lag_s = max(0.0, time.time() - int(off.get("ts_usec", 0)) / 1e6)
    elif slot.exists:
        lag_s = 0.0
    out["lag_seconds"] = None if lag_s is None else round(lag_s, 3)
    out["lag_limit_bytes"] = cfg.slot_max_lag_bytes or None
    out["over_limit"] = bool(cfg.slot_max_lag_bytes and slot.lag_bytes and slot.lag_bytes > cfg.slot_max_lag_bytes)
    return out


def _all_offsets(cluster: Any, configs: list[Any]) -> dict[bytes, Any]:
    from riverbed.connect.offsets import OffsetStore

    stored: dict[bytes, Any] = {}
    for topic in sorted({c.offset_storage_topic for c in configs}):
        stored.update(OffsetStore(cluster, topic, "", "").read_all(timeout=15))
    return stored


def status(cluster: Any, configs: list[Any], as_json: bool) -> int:
    try:
        stored = _all_offsets(cluster, configs)
    except Exception as exc:
        print(f"riverbed: offsets not readable: {exc}", file=sys.stderr)
        stored = {}
    rows = [_status_of(cluster, cfg, stored) for cfg in configs]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['connector']}: slot {r['slot']} " + ("missing" if not r["slot_exists"] else
              f"{'active' if r['slot_active'] else 'inactive'}, wal_status {r['wal_status']}, lag {r['lag_bytes']} bytes / {r['lag_seconds']} s, "
              f"WAL retained {r['retained_wal_bytes']} bytes, confirmed {r['confirmed_flush_lsn']}"))
        print(f"  offsets: lsn {r['offset_lsn']}, snapshot completed {r['snapshot_completed']}"
              + (f"; lag limit {r['lag_limit_bytes']} bytes" + (" EXCEEDED" if r["over_limit"] else "") if r["lag_limit_bytes"] else ""))
    return 0


def offsets(cluster: Any, configs: list[Any]) -> int:
    for key, value in sorted(_all_offsets(cluster, configs).items()):
        print(json.dumps({"key": json.loads(key), "value": value}))
    return 0


def reset(cluster: Any, configs: list[Any], only: str | None, keep_slot: bool) -> int:
    import psycopg

    from riverbed.client import producer
    from riverbed.connect.catalog import Catalog
    from riverbed.connect.offsets import OffsetStore

    chosen = [c for c in configs if only is None or c.name == only]
    if not chosen:
        print(f"riverbed: no connector {only!r} in the config", file=sys.stderr)
        return 2
    prod = producer(cluster)
    for cfg in chosen:
        store = OffsetStore(cluster, cfg.offset_storage_topic, cfg.name, cfg.topic_prefix)
        store.ensure_topic()
        store.write(prod, None)
        dropped = False
        if not keep_slot:
            with psycopg.connect(cfg.conninfo(), autocommit=True, connect_timeout=10) as conn:
                dropped = Catalog(conn).drop_slot(cfg.slot_name)
        print(f"{cfg.name}: offsets reset" + (f", slot {cfg.slot_name} dropped" if dropped else ""))
    if prod.flush(30) > 0:
        print("riverbed: the offsets topic did not acknowledge the reset", file=sys.stderr)
        return 1
    return 0
