"""`riverbed serve` starts the broker without importing what only the other commands need: the
start-up time of the broker is import time, mostly (issue 9)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = {"httpx", "starlette", "uvicorn", "jinja2", "rich", "confluent_kafka", "fastavro", "jsonschema", "google", "boto3", "botocore"}
TOOLKIT = {"registry", "web", "client", "streams", "messaging", "console", "sql", "connect", "gateway", "patterns"}

PROBE = f"""
import sys
from riverbed.cli.main import main
assert main(["serve", "--config", "/nonexistent/riverbed.toml"]) == 2  # parsed, then stops at the config
import riverbed.cli.serve
top = {{m.split(".")[0] for m in sys.modules}}
ours = {{m.split(".")[1] for m in sys.modules if m.startswith("riverbed.") and m.count(".") >= 1}}
print(sorted(top & set({sorted(HEAVY)!r})), sorted(ours & set({sorted(TOOLKIT)!r})))
"""


def test_serve_imports_no_client_http_or_toolkit_module() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert out == "[] []", out


def test_every_command_is_still_there() -> None:
    from riverbed.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"serve", "topic", "schema", "registry", "console", "dlq", "streams", "produce", "consume"} <= set(sub.choices)  # type: ignore[arg-type]
