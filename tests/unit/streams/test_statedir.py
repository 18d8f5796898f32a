"""One instance per state directory: a second is refused with a clear error; a directory left
by a killed instance is taken over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from riverbed.streams import STRING, StreamsApp, StreamsError
from riverbed.streams.runtime import Runtime
from riverbed.streams.statedir import StateDirLock


def test_second_instance_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    app = StreamsApp("locked")
    app.stream("in", STRING, STRING).to("out")
    held = StateDirLock(tmp_path / "locked").acquire()
    try:
        # refused before it talks to any cluster (the bootstrap address is never used)
        with pytest.raises(StreamsError, match="in use by another instance"):
            Runtime(app.topology(), "127.0.0.1:1", state_dir=tmp_path).run()
    finally:
        held.release()
    StateDirLock(tmp_path / "locked").acquire().release()  # free again


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    code = ("import os, sys; from pathlib import Path; from riverbed.streams.statedir import StateDirLock;"
            "StateDirLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); os.kill(os.getpid(), 9)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "app")], capture_output=True, text=True, check=False)
    assert r.returncode == -9 and "locked" in r.stdout
    StateDirLock(tmp_path / "app").acquire().release()
