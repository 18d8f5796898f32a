"""ApiVersions (key 18): the advertised version table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from riverbed.server.handler import ConnectionInfo

from ..versions import SUPPORTED

if TYPE_CHECKING:
    from ..broker import Broker

_KEYS = [ApiVersionsResponse.ApiVersion(k, lo, hi) for k, (lo, hi) in sorted(SUPPORTED.items())]


def handle_api_versions(broker: Broker, conn: ConnectionInfo, version: int, req: ApiVersionsRequest) -> ApiVersionsResponse:
    if version >= 3:
        conn.state["client_software"] = (req.client_software_name, req.client_software_version)
    # No feature flags are advertised: default-valued tagged fields stay out of the response
    # (old librdkafka mis-parses them), and transaction.version >= 2 must not be claimed.
    return ApiVersionsResponse(error_code=0, api_keys=_KEYS, throttle_time_ms=0)
