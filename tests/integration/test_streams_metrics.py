"""A streams app's Prometheus metrics (``metrics_port``) and its status record in
``_riverbed_services``, against a real broker: counts agree with what was produced, lag drops to
zero, a restore from the changelog shows its progress, a clean stop leaves the list and a failed
app stays there as ERROR."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from riverbed.client.status import ServiceDirectory, ServiceEntry
from riverbed.streams import LONG, STRING, StreamsApp
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker, free_port

from .helpers import create_topics
from .test_streams import Reader, latest, produce, running, wait_until

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-streams-dashboard.json"


def check_dashboard(url: str) -> None:
    """Every expression of docs/grafana-streams-dashboard.json names metrics a streams app
    exposes, with labels they carry (families without samples yet, such as late records, are
    checked by name only)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        families = list(text_string_to_metric_families(r.read().decode()))
    labels: dict[str, set[str] | None] = {}
    for fam in families:
        suffixes = {"counter": ["_total"], "summary": ["_sum", "_count"], "histogram": ["_sum", "_count", "_bucket"]}.get(fam.type, [""])
        for suffix in suffixes:
            labels.setdefault(fam.name + suffix, None)
        for sample in fam.samples:
            known = labels.get(sample.name) or set()
            labels[sample.name] = known | set(sample.labels)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(exprs) >= 20
    seen: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\b((?:riverbed|process)_[a-z_]+)\b", expr))
        assert names, f"no metric in {expr!r}"
        for name in names:
            assert name in labels, f"{name} (in {expr!r}) is not exposed"
        known = [labels[n] for n in names if labels[n] is not None]
        if known:
            allowed = set().union(*known) | {"instance", "job"}
            used = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr))
            for group in re.findall(r"\bby \(([^)]*)\)", expr):
                used |= {label.strip() for label in group.split(",")}
            assert used <= allowed, f"labels {used - allowed} of {expr!r} are not on {names}"
        seen |= names
    streams = {n for n in labels if n.startswith("riverbed_streams_")}
    families_shown = {re.sub(r"_(total|sum|count|bucket)$", "", n) for n in seen}
    assert {re.sub(r"_(total|sum|count|bucket)$", "", n) for n in streams} <= families_shown, "a streams metric has no panel"


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return sum(found) if found else None


def word_count(app_id: str, lines: str, out: str) -> StreamsApp:
    app = StreamsApp(app_id)
    (app.stream(lines, STRING, STRING)
        .flat_map_values(str.split)
        .group_by(lambda _k, w: w, key_serde=STRING)
        .count(name="counts")
        .to_stream()
        .to(out, STRING, LONG))
    return app


def entry(directory: ServiceDirectory, kind: str, name: str) -> ServiceEntry | None:
    try:
        entries = directory.update(1)
    except KafkaException:  # the status topic does not exist yet
        return None
    found = [e for e in entries.values() if e.kind == kind and e.name == name]
    return found[-1] if found else None


def test_metrics_and_status_of_a_running_app(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    tag = uuid.uuid4().hex[:6]
    app_id, lines, out = f"wc-metrics-{tag}", f"lines-{tag}", f"counts-{tag}"
    create_topics(bs, NewTopic(lines, 2, 1), NewTopic(out, 2, 1))
    produce(bs, lines, [(None, "a b a", 1), (None, "b c", 2), (None, "a", 3)])
    topo = word_count(app_id, lines, out).topology()
    port = free_port()
    rt = Runtime(topo, bs, state_dir=tmp_path / "s", commit_interval_ms=200, punctuate_interval_ms=100,
                 metrics_port=port, status_interval_s=0.5, cache_max_bytes=0)  # (counts every update)
    url = f"http://127.0.0.1:{port}/metrics"
    reader = Reader(bs, out)
    directory = ServiceDirectory({"bootstrap.servers": bs})
    try:
        with running(rt):
            wait_until(lambda: latest(reader.poll()) == {"a": 3, "b": 2, "c": 1}, "counts")

            # every figure is there once the outputs are committed and the lag ticks have run
            def settled() -> bool:
                s = scrape(url)
                return (value(s, "riverbed_streams_records_consumed_total", app=app_id, topic=lines) == 3
                        and value(s, "riverbed_streams_records_lag", app=app_id, topic=lines) == 0
                        and (value(s, "riverbed_streams_commit_latency_seconds_count", app=app_id) or 0) >= 1)
            wait_until(settled, "consumed 3, lag 0, a commit")
            s = scrape(url)
            assert value(s, "riverbed_streams_state", app=app_id, state="RUNNING") == 1
            assert value(s, "riverbed_streams_state", app=app_id, state="REBALANCING") == 0
            # 6 words through the repartition topic, 6 count updates to the output and the changelog
            assert value(s, "riverbed_streams_records_produced_total", app=app_id, topic=out) == 6
            assert value(s, "riverbed_streams_records_produced_total", app=app_id, topic=f"{app_id}-counts-changelog") == 6
            assert value(s, "riverbed_streams_records_consumed_total", app=app_id, topic=f"{app_id}-counts-repartition") == 6
            assert value(s, "riverbed_streams_process_latency_seconds_count", app=app_id) == 9
            assert (value(s, "riverbed_streams_punctuate_latency_seconds_count", app=app_id) or 0) >= 1
            assert (value(s, "riverbed_streams_rebalances_total", app=app_id) or 0) >= 1
            assert value(s, "riverbed_streams_active_tasks", app=app_id) == 4
            assert (value(s, "riverbed_streams_store_size_bytes", app=app_id, store="counts") or 0) > 0
            assert value(s, "riverbed_streams_restore_remaining_records", app=app_id, store="counts") == 0
            assert value(s, "riverbed_http_requests_total", service="streams", endpoint="endpoint") is not None
            check_dashboard(url)
            # the status record: state, figures, the metrics URL
            wait_until(lambda: (e := entry(directory, "streams", app_id)) is not None and e.figures.get("consumed") == 9
                       and e.state == "RUNNING", "status record with 9 consumed")
            e = entry(directory, "streams", app_id)
            assert e is not None and e.metrics_url == url and e.figures["tasks"] == 4 and not e.stale()
        # a clean stop: a tombstone, the app leaves the list
        wait_until(lambda: entry(directory, "streams", app_id) is None, "tombstone after a clean stop")

        # the state directory deleted: the restore's progress shows in the metrics
        shutil.rmtree(tmp_path / "s")
        rt2 = Runtime(topo, bs, state_dir=tmp_path / "s", commit_interval_ms=200, metrics_port=port, status_interval_s=0.5)
        with running(rt2):
            wait_until(lambda: rt2.stats.state == "RUNNING", "running again")
            s = scrape(url)
            assert value(s, "riverbed_streams_restore_total_records", app=app_id, store="counts") == 6
            assert value(s, "riverbed_streams_restore_records_restored", app=app_id, store="counts") == 6
            assert value(s, "riverbed_streams_restore_remaining_records", app=app_id, store="counts") == 0
    finally:
        reader.close()
        directory.close()


def test_a_failed_app_stays_listed_as_error(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    tag = uuid.uuid4().hex[:6]
    app_id, lines = f"wc-fails-{tag}", f"lines-{tag}"
    create_topics(bs, NewTopic(lines, 1, 1))
    app = StreamsApp(app_id)
    app.stream(lines, STRING, STRING).map_values(lambda v: 1 // 0).to(f"out-{tag}", STRING, STRING)
    create_topics(bs, NewTopic(f"out-{tag}", 1, 1))
    rt = Runtime(app.topology(), bs, in_memory_stores=True, status_interval_s=0.3)
    directory = ServiceDirectory({"bootstrap.servers": bs})
    try:
        with pytest.raises(Exception, match="ZeroDivisionError"), running(rt):
            wait_until(lambda: (e := entry(directory, "streams", app_id)) is not None and e.state == "RUNNING", "running")
            produce(bs, lines, [(None, "x", 1)])
            wait_until(lambda: rt.stats.state == "ERROR", "the app failed")
        wait_until(lambda: (e := entry(directory, "streams", app_id)) is not None and e.state == "ERROR", "ERROR record")
        # no heartbeat any more: stale after 3 intervals
        wait_until(lambda: (e := entry(directory, "streams", app_id)) is not None and e.stale(3.0), "stale", timeout=10)
    finally:
        directory.close()
