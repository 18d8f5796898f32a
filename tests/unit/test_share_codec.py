"""The share-group RPCs are generated from the stable (Kafka 4.1+) specs and advertised at the
versions librdkafka 2.16 sends (v1 of 76-79), never the removed early-access v0."""

from __future__ import annotations

import uuid

from riverbed.broker.versions import SUPPORTED
from riverbed.protocol.messages.share_acknowledge import (
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
)
from riverbed.protocol.messages.share_fetch import ShareFetchRequest, ShareFetchResponse
from riverbed.protocol.messages.share_group_heartbeat import ShareGroupHeartbeatRequest


def test_versions_generated_and_advertised() -> None:
    assert (ShareFetchRequest.MIN_VERSION, ShareFetchRequest.MAX_VERSION) == (1, 2)
    assert (ShareAcknowledgeRequest.MIN_VERSION, ShareAcknowledgeRequest.MAX_VERSION) == (1, 2)
    assert (ShareGroupHeartbeatRequest.MIN_VERSION, ShareGroupHeartbeatRequest.MAX_VERSION) == (1, 1)
    assert SUPPORTED[76] == (1, 1) and SUPPORTED[77] == (1, 1)
    assert SUPPORTED[78] == (1, 2) and SUPPORTED[79] == (1, 2)
    assert SUPPORTED[90] == (0, 1) and SUPPORTED[91] == (0, 0) and SUPPORTED[92] == (0, 0)


def test_share_fetch_v1_round_trip_with_stable_fields() -> None:
    tid = uuid.uuid4()
    req = ShareFetchRequest(
        group_id="g",
        member_id="m",
        share_session_epoch=3,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1 << 20,
        max_records=500,
        batch_size=500,
        topics=[ShareFetchRequest.FetchTopic(tid, [ShareFetchRequest.FetchPartition(0, 0, [ShareFetchRequest.AcknowledgementBatch(5, 9, [1])])])],
    )
    back = ShareFetchRequest.decode(req.encode(1), 1)
    assert back == req
    resp = ShareFetchResponse(acquisition_lock_timeout_ms=30000, responses=[ShareFetchResponse.ShareFetchableTopicResponse(tid, [ShareFetchResponse.PartitionData(partition_index=0, records=b"", acquired_records=[ShareFetchResponse.AcquiredRecords(5, 9, 2)])])])
    back_resp = ShareFetchResponse.decode(resp.encode(2), 2)
    assert back_resp.acquisition_lock_timeout_ms == 30000
    assert back_resp.responses[0].partitions[0].acquired_records == [ShareFetchResponse.AcquiredRecords(5, 9, 2)]
    ack = ShareAcknowledgeResponse(acquisition_lock_timeout_ms=15000)
    assert ShareAcknowledgeResponse.decode(ack.encode(2), 2).acquisition_lock_timeout_ms == 15000


def test_describe_share_state_extension_round_trip() -> None:
    from riverbed.protocol.extensions import EXTENSIONS
    from riverbed.protocol.share_extension import (
        DESCRIBE_SHARE_STATE_KEY,
        DescribeShareStateRequest,
        DescribeShareStateResponse,
        SharePartitionState,
    )

    assert EXTENSIONS[DESCRIBE_SHARE_STATE_KEY] == (DescribeShareStateRequest, DescribeShareStateResponse)
    assert DESCRIBE_SHARE_STATE_KEY not in SUPPORTED  # never advertised to Kafka clients
    req = DescribeShareStateRequest("workers")
    assert DescribeShareStateRequest.decode(req.encode(0), 0) == req
    resp = DescribeShareStateResponse(partitions=[SharePartitionState("jobs", 0, 4, 10, 6, 0, 0, 0)])
    assert DescribeShareStateResponse.decode(resp.encode(0), 0) == resp
