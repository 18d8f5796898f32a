"""Share state survives a broker kill -9: records a ShareConsumer accepted (commit_sync
answered) are never delivered again after the restart, and every other record is."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import AcknowledgeType

from riverbed.testing import BrokerProcess

from .share_helpers import create_topic, produce, set_group_configs, share_consumer, wait_for

N = 300


def test_accepted_records_stay_accepted_after_broker_kill_9(tmp_path: Path) -> None:
    topic, group = "jobs", "durable-workers"
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        create_topic(broker.bootstrap, topic)
        set_group_configs(broker.bootstrap, group, {"share.auto.offset.reset": "earliest"})
        produce(broker.bootstrap, topic, N)
        c = share_consumer(
            broker.bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"}
        )
        accepted: set[int] = set()
        released: set[int] = set()
        while len(accepted) < N // 2:
            for m in c.poll(0.5):
                assert m.error() is None
                # odd offsets go back once (delivered again), the rest are accepted
                first_odd = m.offset() % 2 == 1 and m.delivery_count() == 1
                kind = AcknowledgeType.RELEASE if first_odd else AcknowledgeType.ACCEPT
                c.acknowledge(m, kind)
                (accepted if kind == AcknowledgeType.ACCEPT else released).add(m.offset())
            results = c.commit_sync(10)
            assert all(e is None for e in results.values()), results
        broker.kill()  # kill -9 while the consumer still holds its session
        c.close()
        broker.start()
        c2 = share_consumer(broker.bootstrap, group, topic)
        seen: dict[int, int] = {}

        def drained() -> bool:
            for m in c2.poll(0.3):
                assert m.error() is None
                seen[m.offset()] = m.delivery_count()
            return accepted | set(seen) >= set(range(N))

        wait_for(drained, 30, "the rest of the records after the restart")
        c2.close()
        assert not accepted & set(seen), "an accepted record was delivered again"
        assert accepted | set(seen) == set(range(N))
        assert all(seen[o] >= 2 for o in released if o in seen), (
            "released records keep their delivery count"
        )
    finally:
        broker.kill()
