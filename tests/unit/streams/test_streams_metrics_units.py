"""The streams collector turns a runtime's counters into Prometheus metrics (no broker: the
runtime is built, not run)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from riverbed.streams import LONG, STRING, StreamsApp
from riverbed.streams.metrics import StreamsCollector, status_of
from riverbed.streams.runtime import Runtime


def runtime() -> Runtime:
    app = StreamsApp("m-app")
    app.stream("in", STRING, STRING).group_by_key().count(name="counts").to_stream().to("out", STRING, LONG)
    return Runtime(app.topology(), "127.0.0.1:1", in_memory_stores=True, report_status=False)


def samples(rt: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry()
    reg.register(StreamsCollector(rt))
    text = generate_latest(reg).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_counters_become_metrics() -> None:
    rt = runtime()
    st = rt.stats
    st.state = "RUNNING"
    st.consumed[("in", 0)] = 5
    st.produced["out"] = 3
    st.process_records, st.process_seconds = 5, 0.01
    st.committed(0.02)
    st.lag[("in", 0)] = 7
    rt.restore_progress["counts/0_0"] = (4, 10)
    s = samples(rt)
    assert s[("riverbed_streams_state", (("app", "m-app"), ("state", "RUNNING")))] == 1
    assert s[("riverbed_streams_state", (("app", "m-app"), ("state", "ERROR")))] == 0
    assert s[("riverbed_streams_records_consumed_total", (("app", "m-app"), ("task", "0_0"), ("topic", "in")))] == 5
    assert s[("riverbed_streams_records_produced_total", (("app", "m-app"), ("topic", "out")))] == 3
    assert s[("riverbed_streams_process_latency_seconds_count", (("app", "m-app"),))] == 5
    assert s[("riverbed_streams_commit_latency_seconds_sum", (("app", "m-app"),))] == 0.02
    assert s[("riverbed_streams_records_lag", (("app", "m-app"), ("partition", "0"), ("topic", "in")))] == 7
    labels = (("app", "m-app"), ("store", "counts"), ("task", "0_0"))
    assert (s[("riverbed_streams_restore_records_restored", labels)], s[("riverbed_streams_restore_remaining_records", labels)],
            s[("riverbed_streams_restore_total_records", labels)]) == (4, 6, 10)


def test_status_figures() -> None:
    rt = runtime()
    rt.stats.state = "REBALANCING"
    rt.stats.consumed[("in", 0)] = 2
    rt.restore_progress["counts/0_0"] = (4, 10)
    rt.restore_progress["counts/0_1"] = (3, 3)
    st = status_of(rt)
    assert (st.kind, st.name, st.state) == ("streams", "m-app", "REBALANCING")
    assert st.figures["consumed"] == 2 and st.figures["restoring"] == {"counts/0_0": [4, 10]}
    assert st.figures["restore_remaining"] == 6
