"""``riverbed gateway run gateway.toml``: webhooks in and out, push to browsers and the REST
proxy (riverbed.gateway) against any Kafka-compatible cluster; ``riverbed gateway check`` reads
the file and lists what it would serve."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

# riverbed.gateway (starlette, confluent-kafka, PyJWT) is imported when the command runs, not
# when the parser is built


def add_gateway_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gateway", help="run the edge gateway: webhooks in/out, SSE/WebSocket push, REST proxy"
    )
    gsub = g.add_subparsers(dest="action", required=True)
    run = gsub.add_parser("run", help="serve a gateway.toml")
    check = gsub.add_parser(
        "check", help="read a gateway.toml and list its routes (no cluster needed)"
    )
    for parser in (run, check):
        parser.add_argument("config", type=Path, help="gateway.toml (docs/gateway.md)")
        parser.add_argument(
            "--registry-url",
            help="schema registry of the REST proxy's AVRO/PROTOBUF/JSONSCHEMA (overrides [cluster] schema.registry.url and RIVERBED_REGISTRY_URL)",
        )
    run.add_argument("--listen", help="HOST:PORT (default: [gateway] listen, or 127.0.0.1:8082)")
    run.add_argument(
        "-b", "--bootstrap", help="bootstrap servers (overrides [cluster] and RIVERBED_BOOTSTRAP)"
    )
    run.add_argument("--log-level", default="INFO")


def gateway_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from riverbed.gateway import ConfigError, Gateway, GatewayConfig

    try:
        config = GatewayConfig.load(args.config)
    except (ConfigError, OSError) as exc:
        print(f"riverbed: {exc}", file=sys.stderr)
        return 2
    if args.registry_url:
        config = replace(config, cluster=replace(config.cluster, registry_url=args.registry_url))
    if args.action == "check":
        for r in config.inbound:
            print(f"POST {r.path} -> {r.topic} (verify {r.verify})")
        for p in config.push:
            print(
                f"GET/WS {p.path} <- {p.topic} (auth {p.auth}, filter {p.filter or 'none'}, overflow {p.overflow})"
            )
        for s in config.outbound:
            print(
                f"{s.topic} -> POST {s.url} (subscription {s.name}, dead letters to {s.dead_letter_topic})"
            )
        if config.rest:
            print(
                "POST /v3/clusters/{cluster_id}/topics/{topic}/records[:batch] (REST Proxy v3 produce)"
            )
            print(
                "POST /topics/{topic}[/partitions/{p}], /consumers/{group}/... (REST Proxy v2 produce and consume)"
            )
            print(
                "GET /topics[/{topic}[/partitions[/{p}[/offsets]]]], /brokers (REST Proxy v2 metadata)"
            )
            registry = config.cluster.registry_url
            print(
                f"AVRO, PROTOBUF, JSONSCHEMA through {registry}"
                if registry
                else "AVRO, PROTOBUF, JSONSCHEMA: off (no schema.registry.url)"
            )
        return 0
    if args.bootstrap:
        config = replace(config, cluster=replace(config.cluster, bootstrap=args.bootstrap))
    listen = args.listen or config.listen
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"riverbed: --listen wants HOST:PORT, got {listen!r}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from riverbed.web import HttpServer

    gateway = Gateway(config)
    server = HttpServer(
        gateway.app, host.strip("[]"), int(port), log_level="warning", **config.server_options()
    )
    exit_server = server.server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        # open SSE streams and WebSockets would hold the graceful shutdown: end them first
        gateway.drop_push_clients()
        exit_server(sig, frame)

    server.server.handle_exit = handle_exit  # type: ignore[method-assign]
    logging.getLogger("riverbed.gateway").info(
        "gateway on http://%s (cluster %s)", listen, config.cluster.bootstrap
    )
    from riverbed.web.serve import run_loop

    run_loop(_serve(server))  # uvloop's event loop where installed (it is a dependency)
    return 0


async def _serve(server: Any) -> None:
    """Serve; once started (the lifespan ran: clients, routes, seen windows), keep what start-up
    built out of the cyclic collector's scans and collect the young generation less often, as
    `riverbed serve` does: each webhook allocates short-lived containers (the ASGI scope, its
    task, futures) that reference counting frees anyway."""
    import asyncio
    import gc

    task = asyncio.ensure_future(server.serve())
    while not server.server.started and not task.done():
        await asyncio.sleep(0.05)
    if not task.done():
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
    await task
