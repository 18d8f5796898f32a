"""Acceptance check, by hand: a PostgreSQL projection killed -9 at random K times during N events
ends equal to the model built in one clean pass.

    .venv/bin/python benchmarks/patterns_projection_kill.py [--events 100000] [--kills 5] [--seed 7]

A riverbed broker (child process), a private PostgreSQL server; N counter events (20 % of them
stored as v1 and upcast on read) over 2,000 aggregates in a 3-partition topic. The projector
(tests/integration/patterns_projector_proc.py) runs as a child process and is killed with
SIGKILL at K random points (random progress targets); each time a new one resumes from the
offsets stored in the model's schema. Then a clean projector builds the model once more in
another schema and the two are compared row by row. The suite runs the same check scaled down
(5,000 events, 2 kills) in tests/integration/test_patterns_projections.py.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from riverbed.client import ClusterSettings  # noqa: E402
from riverbed.patterns.projections import PostgresProjector  # noqa: E402
from riverbed.testing import BrokerProcess  # noqa: E402
from riverbed.testing.servers import PostgresServer  # noqa: E402
from tests.integration.patterns_domain import CounterTable, types  # noqa: E402
from tests.integration.test_patterns_projections import PROC, _applied, _events, _model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="proj-kill-") as tmp, BrokerProcess(Path(tmp) / "data", extra=["--log-level", "WARNING"]) as broker, PostgresServer() as pg:
        settings = ClusterSettings(bootstrap=broker.bootstrap)
        t0 = time.monotonic()
        topic, totals = _events(settings, args.events, 2000)
        print(f"produced {args.events} events in {time.monotonic() - t0:.1f} s", flush=True)
        targets = sorted(rnd.sample(range(args.events // 20, args.events * 9 // 10), args.kills))
        t0 = time.monotonic()
        log = open(Path(tmp) / "projector.log", "ab")  # noqa: SIM115
        for target in targets:
            proc = subprocess.Popen([sys.executable, PROC, settings.bootstrap, topic, pg.dsn, "killed"], stdout=subprocess.DEVNULL, stderr=log)
            while _applied(pg, "killed") < target:
                if proc.poll() is not None:
                    raise SystemExit(f"projector exited: {(Path(tmp) / 'projector.log').read_text()[-2000:]}")
                time.sleep(rnd.uniform(0.0, 0.02))
            proc.kill()
            proc.wait(10)
            print(f"kill -9 at {_applied(pg, 'killed')} events applied (target {target})", flush=True)
        log.close()
        resumed = PostgresProjector(settings, [topic], pg.dsn, "killed", CounterTable(), types=types)
        resumed.run_until_caught_up(900)
        resumed.close()
        killed_s = time.monotonic() - t0
        t0 = time.monotonic()
        clean = PostgresProjector(settings, [topic], pg.dsn, "clean", CounterTable(), types=types)
        clean.run_until_caught_up(900)
        clean.close()
        clean_s = time.monotonic() - t0
        a, b = _model(pg, "killed"), _model(pg, "clean")
        same = a == b and {k: v[0] for k, v in a.items()} == totals and sum(v[1] for v in a.values()) == args.events
        print(json.dumps({"events": args.events, "kills": args.kills, "equal_to_clean_pass": same, "rows": len(a),
                          "events_applied": sum(v[1] for v in a.values()), "seconds_with_kills": round(killed_s, 1), "seconds_clean": round(clean_s, 1)}))
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
