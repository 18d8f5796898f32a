"""Bounded transactional calls.

Seen with librdkafka 2.16 against a broker restarted under a live transactional producer:
``send_offsets_to_transaction`` never returned, past its own timeout. A loop that must not hang
runs such calls through ``bounded``: past the deadline it raises ``TransactionStuck`` and the
caller replaces the producer (``init_transactions`` on a new one fences the old, and aborts
its transaction if it was not committed), then reads the batch again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import PatternsError

T = TypeVar("T")


class TransactionStuck(PatternsError):
    """A transactional call did not return within its deadline."""


def bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn()``, or TransactionStuck when it has not returned after ``timeout`` seconds (the
    call keeps running in its daemon thread until the client gives up)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"riverbed-txn-{what}", daemon=True).start()
    if not done.wait(timeout):
        raise TransactionStuck(f"{what} did not return in {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
