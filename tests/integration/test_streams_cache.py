"""Record caching against a real broker: a key updated 1,000 times within a commit interval
reaches the output and changelog topics a few times (once per commit), with the exact result;
the same input without a cache gives one record per update."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from riverbed.streams import LONG, STRING, StreamsApp
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_streams import Reader, produce, wait_until

pytestmark = pytest.mark.integration

UPDATES = 1000


def _app(app_id: str, out: str) -> StreamsApp:
    app = StreamsApp(app_id)
    app.stream("hits", STRING, STRING).group_by_key().count(name="counts").to_stream().to(out, STRING, LONG)
    return app


@pytest.mark.parametrize("cache_max_bytes", [10 * 1024 * 1024, 0])
def test_caching_deduplicates_updates_within_a_commit(riverbed_broker: EmbeddedBroker, tmp_path: Path,
                                                      cache_max_bytes: int) -> None:
    bs = riverbed_broker.bootstrap
    app_id, out = f"cache-{cache_max_bytes}", f"hit-counts-{cache_max_bytes}"
    create_topics(bs, NewTopic("hits", 1, 1), NewTopic(out, 1, 1))
    produce(bs, "hits", [("hot", "x", i) for i in range(UPDATES)] + [("cold", "x", 5)])
    # one long commit interval: everything is processed before the first commit (at stop)
    rt = Runtime(_app(app_id, out).topology(), bs, state_dir=tmp_path, commit_interval_ms=600_000,
                 cache_max_bytes=cache_max_bytes)
    thread = threading.Thread(target=rt.run, daemon=True)
    thread.start()
    outputs, changelog = Reader(bs, out), Reader(bs, f"{app_id}-counts-changelog")
    try:
        wait_until(lambda: rt.running.is_set() and rt.tasks and rt.query("counts", "hot") == UPDATES
                   and rt.query("counts", "cold") == 1, "all processed")  # queries see cached values
        rt.stop()
        thread.join(60)
        assert not thread.is_alive()

        def hot(reader: Reader) -> list[int]:
            return [LONG.deserialize(v) or 0 for k, v, _ts in reader.poll() if k == b"hot"]

        want = 1 if cache_max_bytes else UPDATES
        wait_until(lambda: len(hot(outputs)) >= want and len(hot(changelog)) >= want, "outputs and changelog")
        outs, logged = hot(outputs), hot(changelog)
        assert outs[-1] == logged[-1] == UPDATES  # the exact count either way
        if cache_max_bytes:
            assert len(outs) == len(logged) == 1  # instead of 1,000
            assert [ts for k, _v, ts in outputs.records if k == b"hot"] == [UPDATES - 1]  # the last update's
        else:
            assert outs == logged == list(range(1, UPDATES + 1))
    finally:
        rt.stop()
        thread.join(60)
        outputs.close()
        changelog.close()
