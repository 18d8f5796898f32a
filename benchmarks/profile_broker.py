"""Where riverbed's time goes: py-spy samples of the broker under the run.py loads.

    .venv/bin/pip install py-spy
    .venv/bin/python benchmarks/profile_broker.py [--size 1024] [--seconds 8] [--out-dir DIR]
    .venv/bin/python benchmarks/profile_broker.py --summarize DIR/profile-produce-1024.txt

Starts ``riverbed serve`` (durable defaults, temp data dir) and, for each phase, runs the
run.py load generator in its own process while ``py-spy record --pid`` samples the broker:

* ``produce``: confluent-kafka Producer, acks=all, linger.ms=5, 6 partitions;
* ``consume``: the topic is filled first (not sampled), then read with assign() from 0;
* ``e2e``: 5,000 records/s with a consumer following (the latency scenario);
* ``txn``: one transactional producer committing every 100 records (``--size`` B each), as
  ``transactions.py``'s ``txn-100`` mode (not in the default ``--phases``).

Each phase is sampled once per ``--modes`` entry: ``python`` (py-spy's default: Python
frames of every thread that is on-CPU or blocked in I/O; threads waiting in epoll or on a
condition variable are dropped), ``native`` (C frames too, so time inside uvloop, the
syscalls, crc32c and GIL hand-offs shows; the process is paused for each sample) and
``gil`` (only the thread holding the GIL). The raw collapsed stacks are written to the
output dir (load them in speedscope or flamegraph.pl) and summarised: samples by kind
(idle, fsync, gil-wait, lock-wait, run), by thread, and the top functions by self and by
total (inclusive) samples.

py-spy attaches with ptrace (root, or CAP_SYS_PTRACE, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Event
from pathlib import Path

import run
from run import Json

ENTRY_POINTS = ("riverbed/__main__", "riverbed/cli/")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


MODES = {
    "python": [],  # every on-CPU thread, Python frames
    "gil": ["--gil"],  # only the thread holding the GIL
    "native": ["--native"],  # with C frames (uvloop, os.pread/pwrite, crc32c, ...)
}


def record(pid: int, out: Path, seconds: float, *, mode: str, rate: int) -> subprocess.Popen[bytes]:
    cmd = [
        py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)),
        "--rate", str(rate), "--format", "raw", "--threads", "--output", str(out),
        *MODES[mode],
    ]  # fmt: skip
    if mode != "native":  # --native needs the process paused to unwind C stacks
        cmd.append("--nonblocking")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _label(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m['file']}:{m['func']}"


def classify(labels: list[str]) -> str:
    """What a stack is doing, as far as its frames tell (native frames make it exact):
    ``idle`` (the flusher on its condition variable, the loop in epoll), ``fsync``,
    ``gil-wait`` (a thread back from a syscall waiting for the GIL), ``lock-wait`` (a
    threading.Lock held by the other thread), else ``run``."""
    leaf = labels[-1]
    if leaf.endswith(":epoll_pwait") or any(x.endswith("Condition.wait") for x in labels):
        return "idle"
    if any(x.endswith(":lock_PyThread_acquire_lock") for x in labels):
        return "lock-wait"
    if any(x.endswith((":pthread_cond_timedwait", ":pthread_cond_wait")) for x in labels):
        return "gil-wait"
    if leaf.endswith(":fsync") or leaf == "riverbed/storage/log.py:SegmentLog.flush_cycle":
        return "fsync"
    return "run"


def summarize(path: Path, top: int = 20) -> Json:
    """Self and total samples per function (file:function, line numbers folded), as a share
    of the busy samples (idle waits dropped; time blocked in fsync is kept and shown)."""
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    kinds: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames[0].partition(": ")[2] or frames[0]
            frames = frames[1:]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        labels = [_label(f) for f in frames]
        samples += count
        kind = classify(labels)
        kinds[kind] += count
        if kind == "idle":
            continue
        threads[thread] += count
        self_c[labels[-1]] += count
        for label in set(labels):
            if label.startswith("riverbed/") and not label.startswith(ENTRY_POINTS):
                total_c[label] += count
    busy = samples - kinds["idle"]

    def table(c: Counter[str]) -> list[tuple[str, int, float]]:
        return [(k, v, 100 * v / max(busy, 1)) for k, v in c.most_common(top)]

    return {
        "file": str(path),
        "samples": samples,
        "busy": busy,
        "kinds": dict(kinds),
        "threads": table(threads),
        "self": table(self_c),
        "total": table(total_c),
    }


def print_summary(s: Json) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["kinds"].items()))
    print(f"\n## {s['file']}: {s['samples']} samples ({kinds}); % of the non-idle samples")
    for key, title in (
        ("threads", "by thread"),
        ("self", "self (leaf frame)"),
        ("total", "total (inclusive), riverbed functions"),
    ):
        print(f"\n{title}:")
        for name, n, pct in s[key]:
            print(f"  {pct:5.1f}%  {n:6d}  {name}")


def txn_throughput(bootstrap: str, topic: str, size: int, seconds: float, per_txn: int, started: Event) -> Json:
    """Transactions of ``per_txn`` records for ``seconds`` (one transactional producer)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "transactional.id": f"profile-{topic}"})
    p.init_transactions(30)
    value = b"x" * size
    started.set()
    t0 = time.perf_counter()
    txns = 0
    while time.perf_counter() - t0 < seconds:
        p.begin_transaction()
        for _ in range(per_txn):
            while True:
                try:
                    p.produce(topic, value=value)
                    break
                except BufferError:
                    p.poll(0.01)
        p.commit_transaction(60)
        txns += 1
    elapsed = time.perf_counter() - t0
    return {"txns": txns, "bytes": txns * per_txn * size, "elapsed_s": elapsed}


def _workload(
    ctx: SpawnContext, broker: run.Broker, phase: str, topic: str, size: int, seconds: float
) -> list[tuple[Callable[..., Json], Json]]:
    """The load generator processes of a phase (the topic is filled first for consume)."""
    bs = broker.bootstrap
    if phase == "produce":
        return [(run.produce_throughput, {
            "bootstrap": bs, "topic": topic, "size": size,
            "seconds": seconds + 2, "max_records": 10**9,
        })]  # fmt: skip
    if phase == "consume":
        fill = run.run_phase(ctx, broker, [(run.produce_throughput, {
            "bootstrap": bs, "topic": topic, "size": size,
            "seconds": 3.0, "max_records": 10**9,
        })], timeout=300)[0]  # fmt: skip
        expected = sum(run.high_watermarks(bs, topic))
        run._log(f"filled {fill['records']} records; topic holds {expected}")
        return [(run.consume_throughput, {
            "bootstrap": bs, "topic": topic, "size": size,
            "expected": expected, "min_seconds": seconds + 2, "max_passes": 1000,
        })]  # fmt: skip
    if phase == "e2e":
        count = int(run.E2E_RATE * (seconds + 2))
        return [
            (run.e2e_consumer, {
                "bootstrap": bs, "topic": topic, "start_offsets": run.high_watermarks(bs, topic),
                "expected": count, "warmup": 0, "timeout_s": seconds + 60,
            }),
            (run.e2e_producer, {
                "bootstrap": bs, "topic": topic, "size": size, "rate": run.E2E_RATE,
                "count": count,
            }),
        ]  # fmt: skip
    if phase == "txn":
        return [(txn_throughput, {
            "bootstrap": bs, "topic": topic, "size": size, "seconds": seconds + 2, "per_txn": 100,
        })]  # fmt: skip
    raise SystemExit(f"unknown phase {phase!r} (produce, consume, e2e, txn)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=8.0, help="sampling time per phase")
    ap.add_argument("--rate", type=int, default=250, help="samples per second")
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--phases", default="produce,consume,e2e")
    ap.add_argument("--modes", default="python,native", help=f"of {','.join(MODES)}")
    ap.add_argument("--summarize", nargs="*", help="only summarise these raw files")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)
    if args.summarize:
        for f in args.summarize:
            print_summary(summarize(Path(f), args.top))
        return 0
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    size = args.size
    phases = args.phases.split(",")
    modes = args.modes.split(",")
    files: list[Path] = []
    with run.temp_root(None) as root:
        broker = run.make_broker("riverbed", root)
        broker.start()
        assert broker.popen is not None
        pid = broker.popen.pid
        bs = broker.bootstrap
        topic = f"profile-{size}"
        run.create_topic(bs, topic)
        try:
            for phase in phases:
                for mode in modes:
                    out = out_dir / f"profile-{phase}-{size}-{mode}.txt"
                    workers = _workload(ctx, broker, phase, topic, size, args.seconds)
                    started: list[run.Worker] = []
                    for target, kwargs in workers:
                        event = ctx.Event()
                        key = "ready" if target is run.e2e_consumer else "started"
                        started.append(run.Worker(ctx, target, {**kwargs, key: event}))
                        if not event.wait(60):
                            raise RuntimeError(f"{target.__name__} did not start")
                    time.sleep(0.5)
                    cpu0 = broker.cpu_s()
                    spy = record(pid, out, args.seconds, mode=mode, rate=args.rate)
                    _, err = spy.communicate(timeout=args.seconds + 60)
                    cpu = broker.cpu_s() - cpu0
                    results = [w.result(300) for w in started]
                    if phase == "e2e":
                        what = f"p99 {results[0].get('p99_ms', 0):.1f} ms"
                    elif phase == "txn":
                        r = results[-1]
                        what = f"{r['txns'] / r['elapsed_s']:.0f} txns/s"
                    else:
                        r = results[-1]
                        what = f"{r['bytes'] / run.MB / r['elapsed_s']:.1f} MB/s"
                    run._log(
                        f"{phase} ({mode}): {what}, "
                        f"broker {cpu / args.seconds * 100:.0f}% of a core while sampled"
                        + (f" (py-spy: {err.decode().strip()[-300:]})" if spy.returncode else "")
                    )
                    files.append(out)
        finally:
            broker.stop()
    for f in files:
        if f.exists():
            print_summary(summarize(f, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
