"""``riverbed streams describe``: topology, internal topics, per-task lag and changelog sizes of
a running application, and a Graphviz picture of the topology."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_streams import Reader, latest, produce, running, wait_until

pytestmark = pytest.mark.integration

APP = """
from riverbed.streams import LONG, STRING, StreamsApp
app = StreamsApp("wc-cli")
(app.stream("lines", STRING, STRING).flat_map_values(str.split).group_by(lambda _k, w: w, key_serde=STRING)
    .count(name="counts").to_stream().to("word-counts", STRING, LONG))
"""


def riverbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riverbed", *args], capture_output=True, text=True, timeout=120, check=False)


def test_streams_describe(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    from riverbed.streams.runtime import Runtime

    appfile = tmp_path / "wcapp.py"
    appfile.write_text(APP)
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("lines", 1, 1))
    produce(bs, "lines", [(None, "a b a", 1)])

    offline = riverbed("streams", "describe", f"{appfile}:app", "--offline")
    assert offline.returncode == 0, offline.stderr
    assert "Sub-topology 1 (stores: counts)" in offline.stdout
    assert "wc-cli-counts-repartition (repartition)" in offline.stdout

    dot = riverbed("streams", "describe", str(appfile), "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph topology {")
    assert '"topic:lines" -> "SOURCE-0000000000"' in dot.stdout
    if shutil.which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=dot.stdout, capture_output=True, text=True, check=False)
        assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr

    import importlib.util

    spec = importlib.util.spec_from_file_location("wcapp", appfile)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = Reader(bs, "word-counts")
    # (no record cache: the changelog holds one record per update, as the listing below says)
    with running(Runtime(mod.app.topology(), bs, state_dir=tmp_path / "state", commit_interval_ms=200, cache_max_bytes=0)):
        wait_until(lambda: latest(out.poll()) == {"a": 2, "b": 1}, "counts")
        # committed offsets trail the outputs by at most one commit interval
        wait_until(lambda: "lines: committed 1, end 1, lag 0" in riverbed("streams", "describe", str(appfile), "-b", bs).stdout,
                   "committed offsets")
        # the running instance as it reports in (state, tasks, restores under way)
        described = riverbed("streams", "describe", str(appfile), "-b", bs).stdout
        assert re.search(r"instances:\n  \S+: RUNNING, tasks 2, lag \d+\n    restores: none under way", described), described
    online = riverbed("streams", "describe", str(appfile), "-b", bs)
    assert "instances: none report in" in online.stdout  # a clean stop left the list
    assert online.returncode == 0, online.stderr
    assert "task 0_0" in online.stdout and "task 1_0" in online.stdout
    assert "wc-cli-counts-repartition: committed 3, end 3, lag 0" in online.stdout
    assert "store counts: changelog wc-cli-counts-changelog-0 holds offsets [0, 3)" in online.stdout
    out.close()


def test_streams_describe_bad_target(tmp_path: Path) -> None:
    (tmp_path / "notapp.py").write_text("app = 42\n")
    r = riverbed("streams", "describe", f"{tmp_path / 'notapp.py'}:app", "--offline")
    assert r.returncode == 1 and "is not a StreamsApp" in r.stderr
    r = riverbed("streams", "describe", "no_such_module_xyz:app", "--offline")
    assert r.returncode == 1 and "cannot import" in r.stderr
