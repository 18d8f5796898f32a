"""Progress bars for long CLI operations (rich), on stderr and only when a person watches:
stderr is a terminal (and, for commands whose data goes to stdout, stdout is not: records piped
to a file or another program). Piped, redirected or in CI the commands print exactly what they
printed before. RIVERBED_PROGRESS=0 turns bars off, =1 forces them (for a terminal that does
not say it is one)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO


def wanted(data_on_stdout: bool = False, stderr: TextIO | None = None, stdout: TextIO | None = None) -> bool:
    forced = os.environ.get("RIVERBED_PROGRESS", "")
    if forced in ("0", "1"):
        return forced == "1"
    err, out = stderr or sys.stderr, stdout or sys.stdout
    if not (hasattr(err, "isatty") and err.isatty()):
        return False
    return not (data_on_stdout and hasattr(out, "isatty") and out.isatty())


@contextlib.contextmanager
def progress(description: str, total: int | None, *, data_on_stdout: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`. A bar with a count, rate and time left when `wanted`, else a no-op."""
    if not wanted(data_on_stdout):

        def nothing(n: int = 1) -> None:
            pass

        yield nothing
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(), TimeRemainingColumn()]
    if total is None:
        columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"), TransferSpeedColumn()]
    with Progress(*columns, console=Console(file=sys.stderr, force_terminal=True), transient=True, redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
