"""``riverbed streams describe APP``: a riverbed.streams application's topology (text or
Graphviz DOT), its internal topics, per task the committed offset and lag of each input
partition and the size of each store's changelog partition (what a restore would replay), and
the running instances as they report in (state, restores under way with their progress)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .client_commands import CommandError

# riverbed.streams and confluent-kafka are imported when the command runs, not when the parser
# is built (every `riverbed ...` invocation builds it, `serve` included)


def add_streams_parser(sub: Any, client: Any) -> None:
    st = sub.add_parser("streams", help="describe riverbed.streams applications")
    ssub = st.add_subparsers(dest="action", required=True)
    d = ssub.add_parser("describe", help="topology, internal topics, per-task lag and changelog sizes")
    d.add_argument("app", help="MODULE:ATTR or path/to/file.py:ATTR naming a StreamsApp (ATTR defaults to app)")
    d.add_argument("--format", choices=["text", "dot"], default="text", help="dot: a Graphviz picture of the topology")
    d.add_argument("--offline", action="store_true", help="the topology only; do not ask the cluster")
    client(d)


def load_app(spec: str) -> Any:
    from riverbed.streams import StreamsApp

    target, _, attr = spec.partition(":")
    attr = attr or "app"
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.exists():
                raise CommandError(f"{path} does not exist")
            mspec = importlib.util.spec_from_file_location(path.stem, path)
            assert mspec is not None and mspec.loader is not None
            module = importlib.util.module_from_spec(mspec)
            sys.modules[path.stem] = module
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as e:
        raise CommandError(f"cannot import {target}: {e}") from e
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, StreamsApp):
        obj = obj()
    if not isinstance(obj, StreamsApp):
        raise CommandError(f"{spec} is not a StreamsApp (got {type(obj).__name__})")
    return obj


def streams_command(args: argparse.Namespace) -> int:
    from confluent_kafka import Consumer, TopicPartition

    app = load_app(args.app)
    topo = app.topology()
    if args.format == "dot":
        print(topo.describe_dot())
        return 0
    print(f"application {app.application_id}")
    print(topo.describe())
    print("internal topics:")
    for t in topo.repartition_topics:
        print(f"  {t} (repartition)")
    for name in topo.store_specs:
        print(f"  {topo.changelog_topic(name)} (changelog of store {name})")
    if args.offline:
        return 0
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": app.application_id, "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=10)
        print(f"tasks (group {app.application_id}):")
        for sub in topo.subtopologies:
            parts: dict[int, list[str]] = {}
            for topic in sub.sources:
                meta = md.topics.get(topic)
                if meta is None or meta.error is not None:
                    print(f"  sub-topology {sub.id}: topic {topic} does not exist")
                    continue
                tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
                for tp in c.committed(tps, timeout=10):
                    _low, high = c.get_watermark_offsets(tp, timeout=10)
                    done = tp.offset if tp.offset >= 0 else None
                    lag = high - (done or 0)
                    parts.setdefault(tp.partition, []).append(
                        f"{topic}: committed {'-' if done is None else done}, end {high}, lag {lag}")
            for p, lines in sorted(parts.items()):
                print(f"  task {sub.id}_{p}")
                for line in lines:
                    print(f"    {line}")
                for spec in sub.stores:
                    cl = topo.changelog_topic(spec.name)
                    if cl in md.topics and md.topics[cl].error is None:
                        low, high = c.get_watermark_offsets(TopicPartition(cl, p), timeout=10)
                        print(f"    store {spec.name}: changelog {cl}-{p} holds offsets [{low}, {high})")
                    else:
                        print(f"    store {spec.name}: no changelog topic yet")
        _print_instances(args, app.application_id, md)
    finally:
        c.close()
    return 0


def _print_instances(args: argparse.Namespace, app_id: str, md: Any) -> None:
    """The app's running instances as they report in (docs/adr/0015-services-report-in.md):
    state, heartbeat, and the progress of restores under way."""
    from riverbed.client.status import TOPIC, ServiceDirectory

    meta = md.topics.get(TOPIC)
    if meta is None or meta.error is not None:
        print("instances: none report in (no status topic)")
        return
    directory = ServiceDirectory({"bootstrap.servers": args.bootstrap})
    try:
        found = [e for e in directory.update(len(meta.partitions), 10).values() if e.kind == "streams" and e.name == app_id]
    finally:
        directory.close()
    if not found:
        print("instances: none report in")
        return
    print("instances:")
    for e in sorted(found, key=lambda e: e.instance):
        stale = f" (stale: no heartbeat for {e.age_s():.0f} s)" if e.stale() else ""
        f = e.figures
        print(f"  {e.instance}: {e.state}{stale}, tasks {f.get('tasks', '-')}, lag {f.get('lag', '-')}"
              + (f", metrics {e.metrics_url}" if e.metrics_url else ""))
        restoring = f.get("restoring") or {}
        if not restoring:
            print("    restores: none under way")
        for key, pair in sorted(restoring.items()):
            try:
                done, total = int(pair[0]), int(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            pct = 100.0 * done / total if total else 100.0
            print(f"    restoring {key}: {done} of {total} changelog offsets ({pct:.0f}%)")
