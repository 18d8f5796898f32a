"""The one ASGI stack of riverbed's HTTP surfaces (schema registry today; REST proxy, gateways
and console later): Starlette applications served by uvicorn. See docs/adr/0006-http-stack.md."""

from .app import JsonError, create_app, json_body, json_response, read_body
from .metrics import HttpMetrics
from .serve import HttpServer

__all__ = ["HttpMetrics", "HttpServer", "JsonError", "create_app", "json_body", "json_response", "read_body"]
