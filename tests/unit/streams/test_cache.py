"""Record caching (Kafka's statestore.cache.max.bytes) through the test driver: updates of a key
within a commit interval are deduplicated, written and forwarded on commit or eviction, and
the results stay exact."""

from __future__ import annotations

from riverbed.streams import JSON, LONG, STRING, StreamsApp, TestDriver, TimeWindows
from riverbed.streams.cache import DEFAULT_CACHE_MAX_BYTES

MiB = 1024 * 1024


def _count_app(on_error: str = "fail", boom: str | None = None) -> StreamsApp:
    app = StreamsApp("c", on_processing_error=on_error)

    def check(k: str, n: int) -> tuple[str, int]:
        if k == boom:
            raise ValueError(f"no {k}")
        return k, n

    (app.stream("in", STRING, STRING).group_by_key().count(name="counts")
        .to_stream().map(check).to("out", STRING, LONG))
    return app


def test_default_is_kafkas_10_mib() -> None:
    assert 10 * MiB == DEFAULT_CACHE_MAX_BYTES


def test_a_key_updated_1000_times_is_written_and_forwarded_once_per_commit() -> None:
    with TestDriver(_count_app(), cache_max_bytes=10 * MiB) as d:
        for i in range(1000):
            d.pipe("in", "hot", "x", timestamp=i)
            if i % 100 == 0:
                d.pipe("in", f"cold-{i}", "x", timestamp=i)
        assert d.read("out", STRING, LONG) == []  # nothing leaves before the commit
        assert d.outputs.get("c-counts-changelog", []) == []
        assert d.store("counts").get("hot") == 1000  # reads see the cached value
        assert dict(d.store("counts").all())["hot"] == 1000
        d.commit()
        out = d.read("out", STRING, LONG, with_timestamp=True)
        assert len(out) == 11  # one per key instead of 1,010
        assert dict((k, v) for k, v, _ts in out) == {"hot": 1000} | {f"cold-{i}": 1 for i in range(0, 1000, 100)}
        assert ("hot", 1000, 999) in out  # the last update's timestamp
        assert len(d.outputs["c-counts-changelog"]) == 11
        # the next commit interval starts from the written values
        for i in range(5):
            d.pipe("in", "hot", "x", timestamp=2000 + i)
        d.commit()
        assert d.read("out", STRING, LONG) == [("hot", 1005)]
        assert LONG.deserialize(d.outputs["c-counts-changelog"][-1].value) == 1005


def test_without_cache_every_update_is_forwarded() -> None:
    with TestDriver(_count_app()) as d:  # the driver's default: 0, off
        for i in range(50):
            d.pipe("in", "hot", "x", timestamp=i)
        assert [v for _k, v in d.read("out", STRING, LONG)] == list(range(1, 51))
        assert len(d.outputs["c-counts-changelog"]) == 50


def test_a_full_cache_evicts_the_least_recently_dirtied_entries() -> None:
    # each entry counts its key, value and 100 bytes: 350 bytes hold three entries
    with TestDriver(_count_app(), cache_max_bytes=350) as d:
        for k in ["a", "b", "c"]:
            d.pipe("in", k, "x")
        assert d.read("out", STRING, LONG) == []
        d.pipe("in", "a", "x")  # a is now the most recently dirtied
        d.pipe("in", "d", "x")  # over the limit: b goes
        assert d.read("out", STRING, LONG) == [("b", 1)]
        d.pipe("in", "e", "x")
        assert d.read("out", STRING, LONG) == [("c", 1)]
        d.commit()
        assert d.read("out", STRING, LONG) == [("a", 2), ("d", 1), ("e", 1)]
        assert dict(d.store("counts").all()) == {"a": 2, "b": 1, "c": 1, "d": 1, "e": 1}
        assert (len(d.cache), d.cache.bytes, d.cache.evictions) == (0, 0, 2)


def test_closing_without_a_commit_drops_the_cached_updates() -> None:
    d = TestDriver(_count_app(), cache_max_bytes=MiB)
    d.pipe("in", "a", "x")
    d.pipe("in", "a", "x")
    assert (len(d.cache), d.cache.absorbed) == (1, 1)
    d.close()  # as a crash: the offsets were not committed either, the records come again
    assert (len(d.cache), d.cache.bytes) == (0, 0)
    assert d.read("out", STRING, LONG) == []


def test_windowed_updates_are_cached_and_final_results_stay_exact() -> None:
    def app(emit: str) -> StreamsApp:
        a = StreamsApp("w")
        (a.stream("in", STRING, STRING).group_by_key()
            .windowed_by(TimeWindows.of(100), emit=emit).count(name="wc")
            .to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}", n)).to("out", STRING, LONG))
        return a

    with TestDriver(app("on_update"), cache_max_bytes=MiB) as d:
        for t in range(0, 250):
            d.pipe("in", "k", "x", timestamp=t)
        d.commit()
        out = d.read("out", STRING, LONG, with_timestamp=True)
        assert out == [("k@0", 100, 99), ("k@100", 100, 199), ("k@200", 50, 249)]
        assert len(d.outputs["w-wc-changelog"]) < 20  # windows, stream time bookkeeping: not 250+
    with TestDriver(app("on_window_close"), cache_max_bytes=MiB) as d:
        for t in range(0, 250):
            d.pipe("in", "k", "x", timestamp=t)
        # windows closing flush their cached updates first: the final results are exact
        assert d.read("out", STRING, LONG, with_timestamp=True) == [("k@0", 100, 99), ("k@100", 100, 199)]
        d.commit()
        assert d.read("out", STRING, LONG) == []  # [200, 300) is still open
        assert len([r for r in d.outputs["w-wc-changelog"] if r.key and r.key[0] == 0]) < 10


def test_aggregate_results_through_the_cache_equal_the_uncached_ones() -> None:
    def app() -> StreamsApp:
        a = StreamsApp("agg")
        (a.stream("in", STRING, JSON).group_by_key()
            .aggregate(lambda: {"n": 0, "sum": 0}, lambda _k, v, acc: {"n": acc["n"] + 1, "sum": acc["sum"] + v}, JSON,
                       name="sums")
            .to_stream().to("out", STRING, JSON))
        return a

    inputs = [(f"k{i % 7}", i) for i in range(300)]
    finals = []
    for cache in (0, 500, MiB):  # off, evicting all the time, holding everything
        with TestDriver(app(), cache_max_bytes=cache) as d:
            for k, v in inputs:
                d.pipe("in", k, v)
            d.commit()
            latest: dict[str, object] = {}
            for k, v in d.read("out", STRING, JSON):
                latest[k] = v
            finals.append(latest)
            assert dict(d.store("sums").all()) == latest
    assert finals[0] == finals[1] == finals[2]


def test_a_failure_downstream_of_a_flush_follows_the_error_policy() -> None:
    with TestDriver(_count_app("skip", boom="bad"), cache_max_bytes=MiB) as d:
        d.pipe("in", "bad", "x")
        d.pipe("in", "good", "x")
        d.commit()
        assert d.read("out", STRING, LONG) == [("good", 1)]
        assert d.metrics()["processing_errors"] == 1
