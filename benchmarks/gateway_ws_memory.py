"""Gateway memory per WebSocket connection under uvicorn's WebSocket settings.

    .venv/bin/python benchmarks/gateway_ws_memory.py [--connections 1000] [--out r.json]

For each variant a `riverbed gateway run` child process serves one unfiltered push route
against `riverbed serve` (another child). This process opens `--connections` WebSockets with
the `websockets` client (which offers permessage-deflate, as browsers do), waits until the
gateway counts them all, sends one record through every connection (compression contexts are
allocated on first use), and reads the gateway's RSS with psutil: (RSS with the connections -
RSS with one) / connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from riverbed.testing import BrokerProcess, free_port

VARIANTS: dict[str, dict[str, Any]] = {
    "websockets-sansio, deflate (uvicorn's defaults)": {
        "websocket": "websockets-sansio",
        "ws_per_message_deflate": True,
        "ws_max_size": 16777216,
    },
    "websockets-sansio, no deflate": {
        "websocket": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": 16777216,
    },
    "websockets-sansio, no deflate, 64 KiB messages": {
        "websocket": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": 65536,
    },
    "wsproto, deflate": {
        "websocket": "wsproto",
        "ws_per_message_deflate": True,
        "ws_max_size": 16777216,
    },
    "wsproto, no deflate, 64 KiB messages": {
        "websocket": "wsproto",
        "ws_per_message_deflate": False,
        "ws_max_size": 65536,
    },
}


def toml(port: int, options: dict[str, Any]) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
    return f'[gateway]\nlisten = "127.0.0.1:{port}"\n{extra}\n[[push]]\npath = "/push/all"\ntopic = "bench.ws"\nauth = "none"\nqueue = 64\n'


async def measure(url: str, pid: int, bootstrap: str, n: int, topic_offset: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    proc = psutil.Process(pid)
    ws_url = url.replace("http", "ws") + "/push/all"
    first = await connect(ws_url, ping_interval=None)
    await asyncio.sleep(1)
    rss_one = proc.memory_info().rss
    sockets = [first]
    for _ in range(n):
        sockets.append(await connect(ws_url, ping_interval=None, open_timeout=120))
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if (await http.get(url + "/health")).json()["push"]["/push/all"]["clients"] >= n + 1:
                break
            await asyncio.sleep(0.2)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce("bench.ws", json.dumps({"n": topic_offset, "pad": "x" * 200}).encode())
    p.flush(10)
    got = await asyncio.gather(
        *(asyncio.wait_for(ws.recv(), 60) for ws in sockets), return_exceptions=True
    )
    delivered = sum(1 for g in got if isinstance(g, str))
    await asyncio.sleep(1)
    rss_all = proc.memory_info().rss
    for ws in sockets:
        await ws.close()
    return {
        "connections": n,
        "delivered": delivered,
        "rss_one_mb": round(rss_one / 2**20, 1),
        "rss_all_mb": round(rss_all / 2**20, 1),
        "kib_per_connection": round((rss_all - rss_one) / n / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp_s:
        tmp = Path(tmp_s)
        with BrokerProcess(tmp / "data") as broker:
            for i, (name, options) in enumerate(VARIANTS.items()):
                port = free_port()
                cfg = tmp / f"gateway{i}.toml"
                cfg.write_text(toml(port, options))
                log = open(tmp / f"gateway{i}.log", "wb")  # noqa: SIM115 - the child's
                gw = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "riverbed",
                        "gateway",
                        "run",
                        str(cfg),
                        "-b",
                        broker.bootstrap,
                        "--log-level",
                        "WARNING",
                    ],
                    stdout=log,
                    stderr=log,
                )
                url = f"http://127.0.0.1:{port}"
                try:
                    deadline = time.monotonic() + 60
                    while True:
                        try:
                            if httpx.get(url + "/health").status_code == 200:
                                break
                        except httpx.HTTPError:
                            if time.monotonic() > deadline:
                                raise SystemExit(
                                    (tmp / f"gateway{i}.log").read_text()[-2000:]
                                ) from None
                            time.sleep(0.1)
                    results["variants"][name] = {
                        "options": options,
                        **asyncio.run(measure(url, gw.pid, broker.bootstrap, args.connections, i)),
                    }
                    print(name, results["variants"][name], flush=True)
                finally:
                    gw.terminate()
                    gw.wait(30)
    results["load_after"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
