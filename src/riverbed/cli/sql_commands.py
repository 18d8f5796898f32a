"""``riverbed sql serve`` (the SQL engine and ksqlDB's REST API) and ``riverbed sql`` (a shell
talking to it over that API: multi-line statements, history, tables, push queries streaming until
Ctrl-C; ``-f script.sql`` runs a file, ``-e 'statement;'`` one statement)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

# riverbed.sql, httpx and confluent-kafka are imported when the command runs, not when the
# parser is built (every `riverbed ...` invocation builds it)


def add_sql_parser(sub: Any) -> None:
    s = sub.add_parser("sql", help="SQL over streams (ksqlDB's language): the shell, or `sql serve` for the server")
    s.add_argument("--server", default="http://127.0.0.1:8088", help="the SQL server's URL (default http://127.0.0.1:8088)")
    s.add_argument("-f", "--file", type=Path, help="run the statements of this file, then exit")
    s.add_argument("-e", "--execute", help="run these statements, then exit")
    s.add_argument("--output", choices=["table", "json"], default="table", help="how results are printed")
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a query property, e.g. auto.offset.reset=earliest")
    ssub = s.add_subparsers(dest="sql_action")
    sv = ssub.add_parser("serve", help="run the SQL engine and its REST API (ksqlDB's) on 127.0.0.1:8088")
    sv.add_argument("-b", "--bootstrap", default=None, help="bootstrap servers (default 127.0.0.1:9092, or RIVERBED_BOOTSTRAP)")
    sv.add_argument("--client-config", action="append", metavar="NAME=VALUE", help="a Kafka client setting (security.protocol, sasl.*, ssl.*); repeatable")
    sv.add_argument("--registry-url", default=None, help="the schema registry, for the AVRO, JSON_SR and PROTOBUF formats (or RIVERBED_REGISTRY_URL)")
    sv.add_argument("--listen", default="127.0.0.1:8088", help="HOST:PORT of the REST API (default 127.0.0.1:8088)")
    sv.add_argument("--service-id", default="default_", help="ksql.service.id: names the command topic and the queries' consumer groups (default default_)")
    sv.add_argument("--state-dir", default=None, help="where persistent queries keep their state stores (default $TMPDIR/riverbed-sql/<service id>)")
    sv.add_argument("--instance-id", default=None, help="this server's name among those sharing the command topic: persistent queries' consumers become static group members (group.instance.id = <instance id>-<query id>), so a restarted server gets its partitions back without a rebalance")
    sv.add_argument("--advertised-url", default=None, help="the URL other SQL servers reach this one's REST API at (pull queries forwarded here; default http://<listen>)")
    sv.add_argument("--set", dest="server_set", action="append", default=[], metavar="NAME=VALUE", help="a default query property, e.g. processing.guarantee=exactly_once_v2")
    sv.add_argument("--log-level", default="INFO")


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"riverbed sql: --set wants NAME=VALUE, got {item!r}")
        out[k.strip()] = v.strip()
    return out


def sql_command(args: argparse.Namespace) -> int:
    if args.sql_action == "serve":
        return _serve(args)
    return _shell(args)


def _serve(args: argparse.Namespace) -> int:
    from riverbed.client import ClusterSettings
    from riverbed.sql.engine import Engine
    from riverbed.sql.server import SqlServer

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: every thread's stack on stderr
    settings = ClusterSettings.from_args(args)
    host, _, port = args.listen.rpartition(":")
    engine = Engine(settings, service_id=args.service_id, state_dir=args.state_dir, properties=_kv(args.server_set),
                    instance_id=args.instance_id)
    engine.advertised_url = args.advertised_url
    server = SqlServer(engine, host or "127.0.0.1", int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server.start()
    except Exception as e:  # the cluster is unreachable, the port is taken, ...
        print(f"riverbed sql: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        server.http.sock.close()
        return 1
    # what start-up built (modules, the queries replayed from the command topic) lives as long as
    # the process: moved out of the cyclic collector's generations, so that its full collections
    # (which stop every thread, push queries' rows too) stay short, as the schema registry does
    gc.collect()
    gc.freeze()
    print(f"riverbed sql: serving ksqlDB's REST API on {server.url} (cluster {settings.bootstrap}, "
          f"command topic {engine.command_topic})", flush=True)
    stop.wait()
    server.stop()
    return 0


# -- the shell ------------------------------------------------------------------------------------
def format_table(columns: list[str], rows: list[list[Any]]) -> str:
    """Rows as a box of columns, as ksqlDB's CLI prints them."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells if i < len(r)]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "|" + "|".join(f" {c:<{w}} " for c, w in zip(columns, widths, strict=True)) + "|", line]
    for r in cells:
        out.append("|" + "|".join(f" {c:<{w}} " for c, w in zip(r, widths, strict=False)) + "|")
    out.append(line)
    return "\n".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Shell:
    def __init__(self, server: str, out: TextIO, output: str = "table", properties: dict[str, str] | None = None) -> None:
        import httpx

        self.server = server.rstrip("/")
        self.http = httpx.Client(timeout=httpx.Timeout(60.0, read=None))
        self.out = out
        self.output = output
        self.properties: dict[str, str] = dict(properties or {})
        self.current_query: str | None = None

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run_text(self, text: str) -> bool:
        """Run every statement of ``text``; False once one failed (the rest are not run)."""
        from riverbed.sql.errors import SqlError
        from riverbed.sql.parser import parse

        try:
            statements = parse(text)
        except SqlError as e:
            self.print(str(e))
            return False
        return all(self.run_one(st) for st in statements)

    def run_one(self, st: Any) -> bool:
        from riverbed.sql import ast as A

        if isinstance(st, A.SetProperty):
            self.properties[st.name] = st.value
            self.print(f"Successfully changed local property '{st.name}' to '{st.value}'.")
            return True
        if isinstance(st, A.UnsetProperty):
            self.properties.pop(st.name, None)
            self.print(f"Successfully unset local property '{st.name}'.")
            return True
        if isinstance(st, A.SelectStatement):
            return self._select(st.text)
        if isinstance(st, A.Print):
            return self._print(st.text)
        r = self.http.post(f"{self.server}/ksql", json={"ksql": st.text, "streamsProperties": self.properties})
        body = r.json()
        if r.status_code != 200:
            self.print(body.get("message", r.text))
            return False
        for entity in body:
            self._render(entity)
        return True

    def _print(self, text: str) -> bool:
        with self.http.stream("POST", f"{self.server}/query", json={"ksql": text, "streamsProperties": self.properties}) as r:
            if r.status_code != 200:
                r.read()
                self.print(r.json().get("message", r.text))
                return False
            try:
                for line in r.iter_lines():
                    self.print(line)
            except KeyboardInterrupt:
                self.print("Topic printing ceased")
        return True

    def _select(self, text: str) -> bool:
        headers = {"Accept": "application/vnd.ksqlapi.delimited.v1"}
        with self.http.stream("POST", f"{self.server}/query-stream", headers=headers,
                              json={"sql": text, "properties": self.properties}) as r:
            if r.status_code != 200:
                r.read()
                self.print(r.json().get("message", r.text))
                return False
            lines = r.iter_lines()
            meta = json.loads(next(lines))
            cols = meta["columnNames"]
            self.current_query = meta.get("queryId")
            if self.current_query is None:  # a pull query: all rows at once
                rows = [json.loads(line) for line in lines if line.strip()]
                if self.output == "json":
                    self.print(json.dumps(rows))
                else:
                    self.print(format_table(cols, rows))
                    self.print("Query terminated")
                return True
            widths = [max(len(c), 12) for c in cols]
            line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
            if self.output == "table":
                self.print(line + "\n|" + "|".join(f" {c:<{w}} " for c, w in zip(cols, widths, strict=True)) + "|\n" + line)
            try:
                for raw in lines:
                    if not raw.strip():
                        continue
                    row = json.loads(raw)
                    if self.output == "json":
                        self.print(json.dumps(row))
                    else:
                        self.print("|" + "|".join(f" {_cell(v):<{w}} " for v, w in zip(row, widths, strict=False)) + "|")
            except KeyboardInterrupt:
                self.http.post(f"{self.server}/close-query", json={"queryId": self.current_query})
                self.print("Query terminated")
            finally:
                self.current_query = None
        return True

    def _render(self, e: dict[str, Any]) -> None:
        if self.output == "json":
            self.print(json.dumps(e))
            return
        t = e.get("@type")
        if t == "currentStatus":
            self.print(" Message\n" + "-" * 40 + "\n " + e["commandStatus"]["message"] + "\n" + "-" * 40)
        elif t in ("streams", "tables"):
            items = e[t]
            self.print(format_table([f"{t[:-1].title()} Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"],
                                    [[i["name"], i["topic"], i["keyFormat"], i["valueFormat"], i["isWindowed"]] for i in items]))
        elif t == "queries":
            self.print(format_table(["Query ID", "Query Type", "Status", "Sink Name", "Sink Kafka Topic", "Query String"],
                                    [[q["id"], q["queryType"], q["state"], ",".join(q["sinks"]), ",".join(q["sinkKafkaTopics"]),
                                      q["queryString"]] for q in e["queries"]]))
        elif t == "kafka_topics":
            self.print(format_table(["Kafka Topic", "Partitions", "Partition Replicas"],
                                    [[x["name"], len(x["replicaInfo"]), ",".join(map(str, x["replicaInfo"]))] for x in e["topics"]]))
        elif t == "sourceDescription":
            d = e["sourceDescription"]
            self.print(f"Name                 : {d['name']}\nType                 : {d['type']}\n"
                       f"Kafka topic          : {d['topic']} (key format {d['keyFormat']}, value format {d['valueFormat']})")
            self.print(format_table(["Field", "Type"], [[f["name"], f["schema"]["type"] + (" (key)" if f.get("type") == "KEY" else "")]
                                                         for f in d["fields"]]))
            for label, qs in (("Queries that read from this", d["readQueries"]), ("Queries that write from this", d["writeQueries"])):
                if qs:
                    self.print(f"\n{label} {d['type']}\n" + "\n".join(f"{q['id']} ({q['state']}) : {q['queryString']}" for q in qs))
        elif t == "queryDescription":
            d = e["queryDescription"]
            self.print(f"ID                   : {d['id']}\nSQL                  : {d['statementText']}\n\n"
                       f"Execution plan\n--------------\n{d['executionPlan']}\n\nTopology\n--------\n{d['topology']}")
        elif t == "properties":
            self.print(format_table(["Property", "Value"], [[p["name"], p["value"]] for p in e["properties"]]))
        elif t == "function_names":
            self.print(format_table(["Function Name", "Category"], [[f["name"], f["category"]] for f in e["functions"]]))
        else:
            self.print(json.dumps(e, indent=2))


def _shell(args: argparse.Namespace) -> int:
    shell = Shell(args.server, sys.stdout, args.output, _kv(args.set))
    try:
        info = shell.http.get(f"{shell.server}/info").json()["KsqlServerInfo"]
    except Exception as e:
        print(f"riverbed sql: cannot reach the SQL server at {args.server}: {e}", file=sys.stderr)
        return 1
    if args.file is not None or args.execute is not None:
        text = args.file.read_text() if args.file is not None else args.execute
        return 0 if shell.run_text(text) else 1
    print(f"riverbed sql: connected to {args.server} (server version {info['version']}); statements end with ';', "
          "Ctrl-D quits, Ctrl-C stops a push query")
    read = _reader()
    buf: list[str] = []
    while True:
        try:
            line = read("ksql> " if not buf else "    > ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            buf.clear()
            print()
            continue
        if not buf and line.strip().lower() in ("exit", "quit"):
            return 0
        buf.append(line)
        text = "\n".join(buf)
        if text.strip() and _complete(text):
            buf.clear()
            try:
                shell.run_text(text)
            except KeyboardInterrupt:
                print("Interrupted")


def _complete(text: str) -> bool:
    """Does the text end a statement (a ';' outside quotes and comments)?"""
    quote: str | None = None
    last = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
        elif c in ("'", "`"):
            quote = c
        elif text.startswith("--", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        elif not c.isspace():
            last = c
        i += 1
    return quote is None and last == ";"


def _reader() -> Any:
    history = Path.home() / ".riverbed_sql_history"
    if not sys.stdin.isatty():  # statements piped in: no line editing, no prompts
        def read(_prompt: str) -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")
        return read
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        session: Any = PromptSession(history=FileHistory(str(history)))
        return lambda prompt: session.prompt(prompt)
    except ImportError:
        pass
    try:
        import readline

        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        import atexit

        atexit.register(lambda: _save_history(readline, history))
    except ImportError:
        pass
    return input


def _save_history(readline: Any, path: Path) -> None:
    with contextlib.suppress(OSError):
        readline.write_history_file(path)
