"""``riverbed saga list|show ID``: where each instance of an orchestrated saga stands, read from
its compacted state topic (``<saga>.saga-state``) with a Kafka client."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from riverbed.client import ClusterSettings
from riverbed.patterns.sagas import read_sagas


def add_saga_parser(sub: Any, client: Any) -> None:
    s = sub.add_parser("saga", help="list orchestrated saga instances or show one")
    ssub = s.add_subparsers(dest="action", required=True)
    sl = ssub.add_parser("list", help="every instance with its status and step")
    sl.add_argument("--status", action="append", help="only these statuses (running, compensating, completed, compensated, failed)")
    ss = ssub.add_parser("show", help="one instance: state, data and history")
    ss.add_argument("id")
    for parser in (sl, ss):
        parser.add_argument("--saga", required=True, help="the saga's name (its state topic is NAME.saga-state)")
        parser.add_argument("--state-topic", help="the state topic, if not NAME.saga-state")
        parser.add_argument("--format", choices=["text", "json"], default="text")
        client(parser)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if t else "-"


def run(args: argparse.Namespace) -> int:
    topic = args.state_topic or f"{args.saga}.saga-state"
    try:
        sagas = read_sagas(ClusterSettings(bootstrap=args.bootstrap), topic)
    except (KafkaException, TimeoutError) as exc:
        print(f"riverbed: cannot read {topic} from {args.bootstrap}: {exc}", file=sys.stderr)
        return 1
    if args.action == "list":
        rows = [s for s in sagas.values() if not args.status or s.status in args.status]
        if args.format == "json":
            print(json.dumps([{"id": s.saga_id, "status": s.status, "step": s.step, "reason": s.reason, "updated": _when(s.updated)} for s in rows]))
            return 0
        if not rows:
            print(f"no saga instances in {topic}")
            return 0
        print(f"{'ID':<38} {'STATUS':<13} {'STEP':>4}  {'UPDATED':<20} REASON")
        for s in sorted(rows, key=lambda r: r.updated):
            print(f"{s.saga_id:<38} {s.status:<13} {s.step:>4}  {_when(s.updated):<20} {s.reason}")
        return 0
    found = sagas.get(args.id)
    if found is None:
        print(f"riverbed: no saga instance {args.id!r} in {topic}")
        return 1
    if args.format == "json":
        print(json.dumps(found.__dict__))
        return 0
    print(f"saga {found.saga} instance {found.saga_id}: {found.status}")
    print(f"  step {found.step}; to compensate {found.to_compensate or '-'}; deadline {_when(found.deadline)}; reason {found.reason or '-'}")
    print(f"  data {json.dumps(found.data)}")
    for line in found.history:
        at, _, text = line.partition(" ")
        print(f"  {_when(float(at))}  {text}")
    return 0
