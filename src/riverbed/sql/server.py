"""ksqlDB's REST API on riverbed.web: POST /ksql, POST /query (a chunked JSON array: a header,
then rows as they come), POST /query-stream (HTTP/1.1, newline-delimited JSON by default, or one
JSON array with ``Accept: application/json``), POST /close-query, GET /info, GET /healthcheck.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from riverbed.web import HttpMetrics, HttpServer, JsonError, create_app, json_body, json_response

from .engine import VERSION, Engine, PushQuery, error_body, schema_text, type_text
from .errors import BAD_REQUEST, QUERY_ENDPOINT, SERVER_ERROR, SqlError
from .planner import OutputColumn

log = logging.getLogger("riverbed.sql")

KSQL_JSON = "application/vnd.ksql.v1+json"
DELIMITED = "application/vnd.ksqlapi.delimited.v1"


def _err(status: int, e: SqlError, statement: str | None) -> Response:
    log.info("statement refused (%s): %s", e.code, e)
    return json_response(error_body(e, statement), status, KSQL_JSON)


def _props(body: dict[str, Any], *names: str) -> dict[str, Any]:
    for n in names:
        v = body.get(n)
        if isinstance(v, dict):
            return v
    return {}


async def _wait_for_command(engine: Engine, body: dict[str, Any]) -> Response | None:
    """ksqlDB's ``commandSequenceNumber`` in a request: the statement runs once this server has
    executed that command (one answered by another server, say); 503 after the timeout."""
    seq = body.get("commandSequenceNumber")
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise JsonError(400, BAD_REQUEST, "commandSequenceNumber must be an integer")
    try:
        await anyio.to_thread.run_sync(engine.wait_for_command, seq)
    except SqlError as e:
        return _err(503, e, body.get("ksql") or body.get("sql"))
    return None


def make_app(engine: Engine) -> Any:
    async def ksql(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("ksql"), str):
            raise JsonError(400, BAD_REQUEST, "Request body needs a 'ksql' string")
        text = body["ksql"]
        if (waited := await _wait_for_command(engine, body)) is not None:
            return waited
        try:
            entities = await anyio.to_thread.run_sync(engine.execute, text, _props(body, "streamsProperties"))
        except SqlError as e:
            return _err(400, e, getattr(e, "statement", text))
        except Exception as e:
            log.exception("statement failed: %s", text)
            return _err(500, SqlError(f"{type(e).__name__}: {e}", code=SERVER_ERROR), text)
        return json_response(entities, 200, KSQL_JSON)

    async def _start(text: str, props: dict[str, Any]) -> tuple[str, list[OutputColumn], Any]:
        return await anyio.to_thread.run_sync(engine.query, text, props)

    async def query(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("ksql"), str):
            raise JsonError(400, BAD_REQUEST, "Request body needs a 'ksql' string")
        text = body["ksql"]
        if (waited := await _wait_for_command(engine, body)) is not None:
            return waited
        try:
            kind, cols, result = await _start(text, _props(body, "streamsProperties"))
        except SqlError as e:
            if e.code == 40001 and "SELECT" not in text.upper():
                e.code = QUERY_ENDPOINT
            return _err(400, e, text)
        if kind == "print":
            return StreamingResponse(_print_lines(request, result), media_type="text/plain")
        header = {"header": {"queryId": result.id if kind == "push" else "pull_query", "schema": schema_text(cols)}}
        if kind == "pull":
            rows = [header] + [{"row": {"columns": r}} for r in result]
            return json_response(rows, 200, KSQL_JSON)
        return StreamingResponse(_push_array(request, result, header), media_type=KSQL_JSON)

    async def _print_lines(request: Request, lines: Any) -> AsyncIterator[bytes]:
        try:
            while True:
                line = await anyio.to_thread.run_sync(next, lines, StopIteration)
                if line is StopIteration:
                    return
                if line is None:
                    if await request.is_disconnected():
                        return
                    continue
                yield (str(line) + "\n").encode()
        finally:
            await anyio.to_thread.run_sync(lines.close)

    async def _push_array(request: Request, pq: PushQuery, header: dict[str, Any]) -> AsyncIterator[bytes]:
        yield ("[" + json.dumps(header)).encode()
        async for rows in _batches(request, pq):
            yield "".join(",\n" + json.dumps({"row": {"columns": row}}) for row in rows).encode()
        if pq.limit is not None and pq.sent >= pq.limit:
            yield (",\n" + json.dumps({"finalMessage": "Limit Reached"})).encode()
        elif pq.error:
            yield (",\n" + json.dumps({"errorMessage": {"@type": "generic_error", "error_code": SERVER_ERROR,
                                                        "message": pq.error}})).encode()
        yield b"]\n"

    async def _batches(request: Request, pq: PushQuery) -> AsyncIterator[list[list[Any]]]:
        """The push query's rows as they come, in batches of what is there (one chunk each)."""
        try:
            while True:
                rows = await anyio.to_thread.run_sync(pq.take)
                if rows is None:
                    return
                if not rows:
                    if await request.is_disconnected():
                        log.info("client of push query %s went away; closing it", pq.id)
                        return
                    continue
                yield rows
        finally:
            await anyio.to_thread.run_sync(pq.close)

    async def query_stream(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            raise JsonError(400, BAD_REQUEST, "Request body needs a 'sql' string")
        text = body["sql"]
        if (waited := await _wait_for_command(engine, body)) is not None:
            return waited
        try:
            kind, cols, result = await _start(text, _props(body, "properties", "streamsProperties"))
        except SqlError as e:
            return json_response({"@type": "generic_error", "error_code": e.code, "message": str(e)}, 400, "application/json")
        if kind == "print":
            result.close()
            return json_response({"@type": "generic_error", "error_code": BAD_REQUEST,
                                  "message": "PRINT is served by POST /query"}, 400, "application/json")
        meta = {"queryId": result.id if kind == "push" else None, "columnNames": [c.name for c in cols],
                "columnTypes": [type_text(c.type) for c in cols]}
        as_array = "application/json" in request.headers.get("accept", "") and DELIMITED not in request.headers.get("accept", "")
        if kind == "pull":
            if as_array:
                return json_response([meta, *result], 200, "application/json")
            lines = [json.dumps(meta)] + [json.dumps(r) for r in result]
            return Response("\n".join(lines) + "\n", 200, media_type=DELIMITED)

        async def delimited() -> AsyncIterator[bytes]:
            yield (json.dumps(meta) + "\n").encode()
            async for rows in _batches(request, result):
                yield "".join(json.dumps(row) + "\n" for row in rows).encode()

        async def array() -> AsyncIterator[bytes]:
            yield ("[" + json.dumps(meta)).encode()
            async for rows in _batches(request, result):
                yield "".join("," + json.dumps(row) for row in rows).encode()
            yield b"]"

        if as_array:
            return StreamingResponse(array(), media_type="application/json")
        return StreamingResponse(delimited(), media_type=DELIMITED)

    async def close_query(request: Request) -> Response:
        body = await json_body(request)
        qid = body.get("queryId") if isinstance(body, dict) else None
        if not isinstance(qid, str):
            raise JsonError(400, BAD_REQUEST, "Request body needs a 'queryId' string")
        if not await anyio.to_thread.run_sync(engine.close_query, qid):
            raise JsonError(400, BAD_REQUEST, f"No query with id {qid}")
        return Response(b"", 200)

    async def info(request: Request) -> Response:
        return json_response({"KsqlServerInfo": {"version": VERSION, "kafkaClusterId": "riverbed",
                                                 "ksqlServiceId": engine.service_id,
                                                 "serverStatus": "RUNNING" if engine.started else "STARTING"}},
                             200, KSQL_JSON)

    async def healthcheck(request: Request) -> Response:
        ok = engine.started
        runner = ok and engine.runner_alive
        details = {"metastore": {"isHealthy": ok}, "kafka": {"isHealthy": ok}, "commandRunner": {"isHealthy": runner}}
        ok = ok and runner
        return json_response({"isHealthy": ok, "details": details}, 200 if ok else 503, KSQL_JSON)

    return create_app([
        Route("/ksql", ksql, methods=["POST"]),
        Route("/query", query, methods=["POST"]),
        Route("/query-stream", query_stream, methods=["POST"]),
        Route("/close-query", close_query, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/healthcheck", healthcheck, methods=["GET"]),
    ], media_type=KSQL_JSON, metrics=_metrics(engine))


def _metrics(engine: Engine) -> HttpMetrics:
    """GET /metrics: the HTTP figures every service has, and the engine's queries by state."""
    from prometheus_client.core import GaugeMetricFamily

    class Queries:
        def describe(self) -> list[Any]:
            return []

        def collect(self) -> Any:
            persistent = GaugeMetricFamily("riverbed_sql_persistent_queries", "Persistent queries, by state", labels=["state"])
            by_state: dict[str, int] = {}
            for q in list(engine.queries.values()):
                by_state[q.state] = by_state.get(q.state, 0) + 1
            for state, n in sorted(by_state.items()):
                persistent.add_metric([state], n)
            yield persistent
            yield GaugeMetricFamily("riverbed_sql_push_queries", "Push queries being streamed to clients", value=len(engine.push_queries))

    metrics = HttpMetrics("sql")
    metrics.registry.register(Queries())
    return metrics


class SqlServer:
    """The engine and its REST API; ``start()`` in a background thread, ``serve()`` blocking."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 8088) -> None:
        self.engine = engine
        self.http = HttpServer(make_app(engine), host, port)

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> SqlServer:
        self.engine.metrics_url = f"{self.http.url}/metrics"
        self.engine.advertised_url = self.engine.advertised_url or self.http.url
        self.engine.start()
        self.http.start_in_thread()
        return self

    def stop(self) -> None:
        self.http.stop()
        self.engine.close()
