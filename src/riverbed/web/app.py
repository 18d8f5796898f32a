"""Application factory, JSON bodies with a size limit, and JSON error bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from .metrics import HttpMetrics

log = logging.getLogger("riverbed.web")

DEFAULT_MAX_BODY = 8 * 1024 * 1024


class JsonError(Exception):
    """An error answered as a JSON body {"error_code": code, "message": message}."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_response(data: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return JSONResponse(data, status_code=status, media_type=media_type)


async def read_body(request: Request, max_bytes: int = DEFAULT_MAX_BODY) -> bytes:
    """The request's body; 413 past `max_bytes` (declared or streamed: read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise JsonError(413, 413, f"Request body of {declared} bytes is larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise JsonError(413, 413, f"Request body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, max_bytes: int = DEFAULT_MAX_BODY) -> Any:
    """The request's JSON body; 413 past `max_bytes` (read no further), 400 if not JSON."""
    raw = await read_body(request, max_bytes)
    if not raw:
        raise JsonError(400, 400, "Request body is empty; a JSON object was expected")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise JsonError(400, 400, f"Request body is not valid JSON: {exc}") from None


def create_app(routes: Sequence[BaseRoute], media_type: str = "application/json", metrics: HttpMetrics | None = None) -> Starlette:
    """A Starlette app answering errors as JSON bodies; with `metrics`, also ``GET /metrics``
    (Prometheus) and the middleware that counts and times every request."""
    async def on_json_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, JsonError)
        if exc.status >= 500:
            log.error("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        else:
            log.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        return json_response({"error_code": exc.code, "message": exc.message}, exc.status, media_type)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return json_response({"error_code": exc.status_code, "message": f"HTTP {exc.status_code} {exc.detail}"}, exc.status_code, media_type)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return json_response({"error_code": 50001, "message": f"Internal error: {type(exc).__name__}"}, 500, media_type)

    app = Starlette(
        routes=list(routes),
        exception_handlers={JsonError: on_json_error, HTTPException: on_http_error, Exception: on_unexpected},
    )
    if metrics is not None:
        metrics.install(app)
    return app
