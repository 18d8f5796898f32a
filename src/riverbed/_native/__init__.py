"""Optional C helpers for hot loops (ADR 0014), built by setup.py when a compiler is present;
every one has a Python reference implementation that is used when the helper is not built, or
when ``RIVERBED_NO_NATIVE=1`` is set (to measure or test the Python path)."""

from __future__ import annotations

import importlib
import os
from typing import Any


def load(name: str) -> Any:
    """The helper module ``riverbed._native.<name>``, or None (not built, or switched off)."""
    if os.environ.get("RIVERBED_NO_NATIVE", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(f"riverbed._native.{name}")
    except ImportError:
        return None
