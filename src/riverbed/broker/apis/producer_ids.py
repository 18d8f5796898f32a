"""InitProducerId (key 22) for idempotent producers.

A null transactional id gets a fresh producer id at epoch 0, as in Kafka (a KIP-360 epoch
bump request from an idempotent producer also gets a fresh id). A transactional id goes to
the transaction coordinator (``txns.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

from .txns import init_transactional_producer

if TYPE_CHECKING:
    from ..broker import Broker


def handle_init_producer_id(broker: Broker, conn: ConnectionInfo, version: int, req: InitProducerIdRequest) -> InitProducerIdResponse | asyncio.Future[InitProducerIdResponse]:
    if req.transactional_id is not None:
        return init_transactional_producer(broker, conn, version, req)
    # an idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka)
    if broker.authorizer is not None and not (
        broker.authorize(conn, AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME)
        or any(broker.authorize(conn, AclOperation.WRITE, ResourceType.TOPIC, t.name) for t in broker.topics if not t.internal)
    ):
        return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=0, producer_id=broker.topics.allocate_producer_id(), producer_epoch=0)
