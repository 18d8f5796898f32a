"""Acceptance run of riverbed.connect (issue 13), by hand: 100,000 row changes across 3 tables
while the connector process is killed with -9 five times at random moments; afterwards every
change must be on its topic (once after dropping duplicates by LSN), in commit order per key,
and the tables rebuilt from the topics must equal the database row by row.

    .venv/bin/python benchmarks/connect_acceptance.py [--changes 100000] [--kills 5] [--seed N]

(The suite runs the same check scaled down: tests/integration/test_connect.py.)
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from connect_helpers import events, position, replay

from riverbed.connect.pgoutput import parse_lsn
from riverbed.testing import BrokerProcess
from riverbed.testing.servers import PostgresServer

TOML = """
[cluster]
bootstrap.servers = "{bootstrap}"

[[connector]]
name = "acceptance"
topic.prefix = "acc"
database.dsn = "{dsn}"
slot.name = "acceptance"
publication.autocreate.mode = "filtered"
table.include.list = "public\\\\.t[0-9]"
value.converter.schemas.enable = true
offset.flush.interval.ms = 200
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--writers", type=int, default=3, help="concurrent writing connections")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tables = ["t1", "t2", "t3"]
    tmp = Path(tempfile.mkdtemp(prefix="connect-acceptance-"))
    t_start = time.monotonic()
    with PostgresServer(settings={"wal_level": "logical"}) as pg, BrokerProcess(tmp / "broker") as broker:
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            for t in tables:
                c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL, s text)")
                c.execute(f"INSERT INTO {t} SELECT g, 0, 'seed' FROM generate_series(1, 1000) g")
        cfg = tmp / "cdc.toml"
        cfg.write_text(TOML.format(bootstrap=broker.bootstrap, dsn=pg.dsn))
        log = open(tmp / "connector.log", "ab")  # noqa: SIM115

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "riverbed", "connect", "run", str(cfg), "--log-level", "WARNING"], stdout=log, stderr=log)

        def active() -> bool:
            with psycopg.connect(pg.dsn, autocommit=True) as c:
                return c.execute("SELECT active FROM pg_replication_slots WHERE slot_name = 'acceptance'").fetchone() == (True,)

        proc = start()
        while not active():
            time.sleep(0.05)
        kills: list[float] = []

        def killer() -> None:
            nonlocal proc
            for _ in range(args.kills):
                time.sleep(rng.uniform(0.5, 4.0))
                deadline = time.monotonic() + 60
                while not active() and time.monotonic() < deadline:
                    time.sleep(0.02)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills.append(time.monotonic() - t_start)
                proc = start()

        kt = threading.Thread(target=killer)
        kt.start()
        changes = 0
        per_key: dict[tuple[str, int], int] = {}
        lock = threading.Lock()

        def writer(wid: int) -> None:
            """Transactions of 1-40 changes; several writers overlap, so change LSNs interleave
            between transactions (commit order is what the topics must keep)."""
            nonlocal changes
            wrng = random.Random(args.seed * 100 + wid)
            with psycopg.connect(pg.dsn) as c:
                batch = 0
                while changes < args.changes:
                    mine: dict[tuple[str, int], int] = {}
                    try:
                        for _ in range(wrng.randint(1, 40)):
                            t = wrng.choice(tables)
                            k = wrng.randint(1, 3000)
                            op = wrng.random()
                            if op < 0.45:
                                cur = c.execute(f"INSERT INTO {t} VALUES (%s, %s, 'i') ON CONFLICT (id) DO UPDATE SET v = {t}.v + 1, s = 'c'", (k, batch))
                            elif op < 0.85:
                                cur = c.execute(f"UPDATE {t} SET v = v + 1, s = %s WHERE id = %s", (f"u{wid}.{batch}", k))
                            else:
                                cur = c.execute(f"DELETE FROM {t} WHERE id = %s", (k,))
                            if cur.rowcount:
                                mine[(t, k)] = mine.get((t, k), 0) + cur.rowcount
                        c.commit()
                    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                        c.rollback()  # overlapping writers: this transaction never happened
                        continue
                    with lock:
                        for key, n in mine.items():
                            per_key[key] = per_key.get(key, 0) + n
                            changes += n
                    batch += 1
                    if kt.is_alive():
                        time.sleep(0.001)  # spread the writes over the kills

        writers = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        write_end = time.monotonic() - t_start
        kt.join()
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            target = parse_lsn(c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])  # type: ignore[index]
            while True:
                row = c.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'acceptance'").fetchone()
                if row and row[0] and parse_lsn(row[0]) >= target:
                    break
                time.sleep(0.1)
        caught = time.monotonic() - t_start
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        applied_total, records, dups = 0, 0, 0
        ok = True
        with psycopg.connect(pg.dsn) as c:
            for t in tables:
                evts = events(broker.bootstrap, f"acc.public.{t}")
                records += len(evts)
                state, applied = replay(evts)
                applied_total += applied
                rows = {r[0]: {"id": r[0], "v": r[1], "s": r[2]} for r in c.execute(f"SELECT id, v, s FROM {t}")}
                if state != rows:
                    ok = False
                    diff = [k for k in set(state) | set(rows) if state.get(k) != rows.get(k)]
                    print(f"{t}: {len(diff)} rows differ, e.g. {diff[:5]}")
                snaps = sorted({int(e.source["lsn"]) for e in evts if e.op == "r"})
                print(f"{t}: {applied} applied, {sum(v for (tt, _k), v in per_key.items() if tt == t)} written, state equal {state == rows}, "
                      f"{sum(e.op == 'r' for e in evts)} snapshot records at LSNs {snaps}")
                if applied != sum(v for (tt, _k), v in per_key.items() if tt == t):
                    ok = False
                    got: dict[int, list[tuple[str, tuple[int, int], int]]] = {}
                    for e in evts:
                        row = e.after if e.after is not None else e.before
                        if e.op is not None and row is not None:
                            got.setdefault(row["id"], []).append((e.op, position(e), e.offset))
                    for k in sorted({k for (tt, k) in per_key if tt == t}):
                        seen_pos, count = (-1, -1), 0
                        for op, pos, _o in got.get(k, []):
                            if op == "r":
                                seen_pos = pos
                            elif pos > seen_pos:
                                count += 1
                                seen_pos = pos
                        if count != per_key[(t, k)]:
                            print(f"{t} id {k}: {per_key[(t, k)]} changes written, {count} applied: {got.get(k)}")
                last: dict[int, tuple[int, int]] = {}
                for e in evts:
                    row = e.after or e.before
                    if e.op in ("c", "u", "d") and row is not None:
                        pos = position(e)
                        if pos <= last.get(row["id"], (-1, -1)):
                            dups += 1  # a redelivery; an out-of-order one would also fail the row comparison
                        else:
                            last[row["id"]] = pos
        ok = ok and applied_total == changes
        print(json.dumps({"seed": args.seed, "writers": args.writers, "changes": changes, "applied_after_dedup": applied_total, "records": records,
                          "duplicates_dropped": dups, "kills_at_s": [round(k, 1) for k in kills], "writes_done_s": round(write_end, 1),
                          "caught_up_s": round(caught, 1), "tables_equal_database": ok}, indent=2))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
