"""The broker's error counting (Kafka's ErrorsPerSec): every error_code of a response and of
its nested structures, as Kafka's AbstractResponse.errorCounts finds them."""

from __future__ import annotations

import uuid

from riverbed.broker.stats import BrokerStats
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.fetch import FetchResponse
from riverbed.protocol.messages.heartbeat import HeartbeatResponse
from riverbed.protocol.messages.produce import ProduceResponse

P = ProduceResponse.PartitionProduceResponse


def test_errors_of_nested_partitions_are_counted() -> None:
    stats = BrokerStats()
    resp = ProduceResponse(
        responses=[
            ProduceResponse.TopicProduceResponse(name="a", partition_responses=[P(index=0, error_code=0), P(index=1, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER)]),
            ProduceResponse.TopicProduceResponse(name="b", partition_responses=[P(index=0, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER), P(index=1, error_code=ErrorCode.CORRUPT_MESSAGE)]),
        ]
    )
    stats.answered(0, resp, lambda _id: None)
    stats.answered(12, HeartbeatResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS), lambda _id: None)
    stats.answered(12, HeartbeatResponse(error_code=0), lambda _id: None)
    assert stats.errors == {
        (0, int(ErrorCode.NOT_LEADER_OR_FOLLOWER)): 2,
        (0, int(ErrorCode.CORRUPT_MESSAGE)): 1,
        (12, int(ErrorCode.REBALANCE_IN_PROGRESS)): 1,
    }


def test_fetch_bytes_out_per_topic_by_name_or_id() -> None:
    stats = BrokerStats()
    tid = uuid.uuid4()
    PD = FetchResponse.PartitionData
    resp = FetchResponse(
        responses=[
            FetchResponse.FetchableTopicResponse(topic="named", partitions=[PD(partition_index=0, records=b"x" * 10), PD(partition_index=1, records=b"y" * 5)]),
            FetchResponse.FetchableTopicResponse(topic="", topic_id=tid, partitions=[PD(partition_index=0, records=b"z" * 7), PD(partition_index=1, error_code=ErrorCode.OFFSET_OUT_OF_RANGE, records=b"")]),
        ]
    )
    stats.answered(1, resp, lambda i: "by-id" if i == tid else None)
    assert stats.bytes_out == {"named": 15, "by-id": 7}
    assert stats.errors == {(1, int(ErrorCode.OFFSET_OUT_OF_RANGE)): 1}
    stats.forget_topic("named")
    assert stats.bytes_out == {"by-id": 7}
