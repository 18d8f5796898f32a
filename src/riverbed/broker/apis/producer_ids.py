"""InitProducerId (key 22) for idempotent producers.

A null transactional id gets a fresh producer id at epoch 0, as in Kafka (a KIP-360 epoch
bump request from an idempotent producer also gets a fresh id). Transactional ids need the
transaction coordinator, which riverbed does not have yet: they are refused with
UNSUPPORTED_VERSION and a message saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker


def handle_init_producer_id(broker: Broker, conn: ConnectionInfo, version: int, req: InitProducerIdRequest) -> InitProducerIdResponse:
    if req.transactional_id is not None:
        return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.UNSUPPORTED_VERSION, producer_id=-1, producer_epoch=-1)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=broker.topics.allocate_producer_id(), producer_epoch=0)
