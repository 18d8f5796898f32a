"""Edge gateways on any Kafka-compatible cluster (through confluent-kafka only): webhooks in
(signature checks, replay protection, CloudEvents, 202 after acks=all), push to browsers over
SSE and WebSocket (per-user views, resume, JWT, bounded queues), webhooks out (Standard Webhooks
signatures, per-key order, retries, dead letters) and Confluent REST Proxy v3 produce.
``riverbed gateway run gateway.toml`` serves a :class:`GatewayConfig`. See docs/gateway.md."""

from .app import Gateway
from .config import ConfigError, GatewayConfig, InboundRoute, OutboundSubscription, PushRoute
from .signatures import SignatureError, sign_github, sign_hmac, sign_standard, sign_stripe

__all__ = [
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "InboundRoute",
    "OutboundSubscription",
    "PushRoute",
    "SignatureError",
    "sign_github",
    "sign_hmac",
    "sign_standard",
    "sign_stripe",
]
