"""gateway.toml: the gateway's typed configuration (see docs/gateway.md for every key)."""

from __future__ import annotations

import functools
import importlib.util
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riverbed.client import ClusterSettings

from .signatures import SCHEMES


class ConfigError(ValueError):
    """gateway.toml says something the gateway cannot do."""


@functools.lru_cache(maxsize=256)
def _path_parts(path: str) -> tuple[str, ...]:
    """A JSON path's steps, parsed once per path (routes use the same few paths per request)."""
    path = path.removeprefix("$").removeprefix(".").replace("[", ".").replace("]", "")
    return tuple(part for part in path.split(".") if part != "")


def json_path(doc: Any, path: str) -> Any:
    """``a.b.0.c`` (or ``$.a.b[0].c``) in a decoded JSON document; None when absent."""
    cur = doc
    for part in _path_parts(path):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif (
            isinstance(cur, list)
            and part.lstrip("-").isdigit()
            and -len(cur) <= int(part) < len(cur)
        ):
            cur = cur[int(part)]
        else:
            return None
        if cur is None:
            return None
    return cur


def _secret(table: Mapping[str, Any], what: str, env: Mapping[str, str]) -> str | None:
    if "secret_env" in table:
        name = str(table["secret_env"])
        if name not in env:
            raise ConfigError(f"{what}: environment variable {name} (secret_env) is not set")
        return env[name]
    value = table.get("secret")
    return None if value is None else str(value)


def _known(table: Mapping[str, Any], what: str, names: set[str]) -> None:
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown keys {', '.join(unknown)}")


@dataclass(frozen=True)
class InboundRoute:
    path: str
    topic: str
    verify: str = "none"
    secret: str | None = None
    key: str | None = None  # JSON path of the record key
    id: str | None = None  # JSON path of the provider's event id (default per scheme)
    tolerance: float = 300.0
    headers: tuple[str, ...] = ()  # request headers carried over as record headers
    signature_header: str = "X-Signature"
    signature_prefix: str = ""
    signature_encoding: str = "hex"
    cloudevents: str | None = None  # "binary" | "structured": wrap plain webhooks as CloudEvents
    ce_type: str | None = None
    ce_source: str | None = None
    rate_limit: float = 0.0  # requests per second per client address (0: none)
    burst: int = 0
    dedup_window: int = 100_000
    require_json: bool = True
    dedup_redis: str | None = None  # redis://...: event ids shared by every gateway instance
    dedup_ttl: float = 3 * 24 * 3600.0  # seconds an accepted id is remembered there
    auth: str = "none"  # "jwt": a bearer token is required; its user id becomes the default key
    scope: str | None = None
    user_claim: str = "sub"

    _KEYS = {
        "dedup_redis",
        "dedup_ttl",
        "auth",
        "scope",
        "user_claim",
        "path",
        "topic",
        "verify",
        "secret",
        "secret_env",
        "key",
        "id",
        "tolerance",
        "headers",
        "signature_header",
        "signature_prefix",
        "signature_encoding",
        "cloudevents",
        "ce_type",
        "ce_source",
        "rate_limit",
        "burst",
        "dedup_window",
        "require_json",
    }

    @classmethod
    def parse(cls, t: Mapping[str, Any], env: Mapping[str, str]) -> InboundRoute:
        what = f"[[webhooks.in]] {t.get('path', '?')}"
        _known(t, what, cls._KEYS)
        for need in ("path", "topic"):
            if not t.get(need):
                raise ConfigError(f"{what}: '{need}' is required")
        verify = str(t.get("verify", "none"))
        if verify not in SCHEMES:
            raise ConfigError(f"{what}: verify must be one of {', '.join(SCHEMES)}")
        secret = _secret(t, what, env)
        if verify != "none" and not secret:
            raise ConfigError(f"{what}: verify = {verify!r} needs secret or secret_env")
        ce = t.get("cloudevents")
        if ce not in (None, "binary", "structured"):
            raise ConfigError(f"{what}: cloudevents must be 'binary' or 'structured'")
        if ce and not (t.get("ce_type") and t.get("ce_source")):
            raise ConfigError(f"{what}: cloudevents needs ce_type and ce_source")
        enc = str(t.get("signature_encoding", "hex"))
        if enc not in ("hex", "base64"):
            raise ConfigError(f"{what}: signature_encoding must be hex or base64")
        rate = float(t.get("rate_limit", 0))
        auth = str(t.get("auth", "none"))
        if auth not in ("jwt", "none"):
            raise ConfigError(f"{what}: auth must be 'jwt' or 'none'")
        return cls(
            auth=auth,
            scope=t.get("scope"),
            user_claim=str(t.get("user_claim", "sub")),
            dedup_redis=t.get("dedup_redis"),
            dedup_ttl=float(t.get("dedup_ttl", 3 * 24 * 3600)),
            path=str(t["path"]),
            topic=str(t["topic"]),
            verify=verify,
            secret=secret,
            key=t.get("key"),
            id=t.get("id"),
            tolerance=float(t.get("tolerance", 300)),
            headers=tuple(str(h) for h in t.get("headers", ())),
            signature_header=str(t.get("signature_header", "X-Signature")),
            signature_prefix=str(t.get("signature_prefix", "")),
            signature_encoding=enc,
            cloudevents=ce,
            ce_type=t.get("ce_type"),
            ce_source=t.get("ce_source"),
            rate_limit=rate,
            burst=int(t.get("burst", max(1, int(rate)))),
            dedup_window=int(t.get("dedup_window", 100_000)),
            require_json=bool(t.get("require_json", True)),
        )


@dataclass(frozen=True)
class PushRoute:
    path: str
    topic: str
    auth: str = "jwt"  # "jwt" | "none"
    filter: str | None = None  # None | "key" | "field"
    field: str | None = None  # JSON path compared with the user's id when filter = "field"
    user_claim: str = "sub"
    scope: str | None = None  # a scope the token's "scope" claim must hold
    queue: int = 256  # records buffered per client
    overflow: str = "drop"  # "drop" the client | "skip" ahead
    replay: int = 10_000  # recent records kept in memory per partition for resuming clients
    replay_bytes: int = 64 * 1024 * 1024  # and at most this many bytes of them per route
    max_clients: int = 20_000  # connections at once (more get 503 / WebSocket close 1013)
    max_per_user: int = 16  # connections of one user at once (filtered routes; 429 / close 1008)

    _KEYS = {
        "path",
        "topic",
        "auth",
        "filter",
        "field",
        "user_claim",
        "scope",
        "queue",
        "overflow",
        "replay",
        "replay_bytes",
        "max_clients",
        "max_per_user",
    }

    @classmethod
    def parse(cls, t: Mapping[str, Any]) -> PushRoute:
        what = f"[[push]] {t.get('path', '?')}"
        _known(t, what, cls._KEYS)
        for need in ("path", "topic"):
            if not t.get(need):
                raise ConfigError(f"{what}: '{need}' is required")
        r = cls(
            path=str(t["path"]),
            topic=str(t["topic"]),
            auth=str(t.get("auth", "jwt")),
            filter=t.get("filter"),
            field=t.get("field"),
            user_claim=str(t.get("user_claim", "sub")),
            scope=t.get("scope"),
            queue=int(t.get("queue", 256)),
            overflow=str(t.get("overflow", "drop")),
            replay=int(t.get("replay", 10_000)),
            max_clients=int(t.get("max_clients", 20_000)),
            max_per_user=int(t.get("max_per_user", 16)),
            replay_bytes=int(t.get("replay_bytes", 64 * 1024 * 1024)),
        )
        if r.auth not in ("jwt", "none"):
            raise ConfigError(f"{what}: auth must be 'jwt' or 'none'")
        if r.filter not in (None, "key", "field"):
            raise ConfigError(f"{what}: filter must be 'key' or 'field'")
        if r.filter == "field" and not r.field:
            raise ConfigError(f"{what}: filter = 'field' needs field = '<json path>'")
        if r.filter and r.auth != "jwt":
            raise ConfigError(f"{what}: a per-user filter needs auth = 'jwt'")
        if r.overflow not in ("drop", "skip"):
            raise ConfigError(f"{what}: overflow must be 'drop' or 'skip'")
        if r.queue < 1 or r.replay < 0:
            raise ConfigError(f"{what}: queue must be >= 1 and replay >= 0")
        return r


@dataclass(frozen=True)
class OutboundSubscription:
    name: str
    topic: str
    url: str
    secret: str
    filter_field: str | None = None  # JSON path
    filter_equals: Any = None
    max_attempts: int = 20
    backoff_ms: int = 1000
    backoff_max_ms: int = 3_600_000
    timeout_ms: int = 10_000
    dlq_topic: str | None = None  # default "<topic>.<name>.DLQ"
    lanes: int = 8  # keys delivered in parallel (records of one key stay in order)
    group: str | None = None  # consumer group (default riverbed-gateway-out-<name>)
    rate_limit: float = 0.0  # requests per second to this endpoint (0: none)
    batch: int = 500
    max_parked: int = 10_000  # records held in the retry topic (and memory) before intake waits
    session_timeout_ms: int = 45_000  # a dead instance's partitions (and parked records) move after it

    _KEYS = {
        "name",
        "topic",
        "url",
        "secret",
        "secret_env",
        "filter_field",
        "filter_equals",
        "max_attempts",
        "backoff_ms",
        "backoff_max_ms",
        "timeout_ms",
        "dlq_topic",
        "lanes",
        "group",
        "rate_limit",
        "batch",
        "max_parked",
        "session_timeout_ms",
    }

    @classmethod
    def parse(cls, t: Mapping[str, Any], env: Mapping[str, str]) -> OutboundSubscription:
        what = f"[[webhooks.out]] {t.get('name', '?')}"
        _known(t, what, cls._KEYS)
        for need in ("name", "topic", "url"):
            if not t.get(need):
                raise ConfigError(f"{what}: '{need}' is required")
        secret = _secret(t, what, env)
        if not secret:
            raise ConfigError(
                f"{what}: secret or secret_env is required (Standard Webhooks signatures)"
            )
        from .signatures import standard_key

        try:
            standard_key(secret)
        except ValueError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        r = cls(
            name=str(t["name"]),
            topic=str(t["topic"]),
            url=str(t["url"]),
            secret=secret,
            filter_field=t.get("filter_field"),
            filter_equals=t.get("filter_equals"),
            max_attempts=int(t.get("max_attempts", 20)),
            backoff_ms=int(t.get("backoff_ms", 1000)),
            backoff_max_ms=int(t.get("backoff_max_ms", 3_600_000)),
            timeout_ms=int(t.get("timeout_ms", 10_000)),
            dlq_topic=t.get("dlq_topic"),
            lanes=int(t.get("lanes", 8)),
            group=t.get("group"),
            rate_limit=float(t.get("rate_limit", 0)),
            batch=int(t.get("batch", 500)),
            max_parked=int(t.get("max_parked", 10_000)),
            session_timeout_ms=int(t.get("session_timeout_ms", 45_000)),
        )
        if r.max_attempts < 1 or r.lanes < 1 or r.batch < 1 or r.max_parked < 1:
            raise ConfigError(f"{what}: max_attempts, lanes, batch and max_parked must be >= 1")
        return r

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.{self.name}.DLQ"

    @property
    def retry_topic(self) -> str:
        """Where failing records are parked, with their attempt count and next due time in
        headers (not compacted: one key's parked records are all kept, in order)."""
        return f"{self.topic}.{self.name}.retry"

    @property
    def retry_group_id(self) -> str:
        """The consumer group whose committed offsets mark how far the retry topic is settled."""
        return f"{self.group_id}.retry"

    @property
    def group_id(self) -> str:
        return self.group or f"riverbed-gateway-out-{self.name}"


@dataclass(frozen=True)
class JwtSettings:
    key: str | None = None
    algorithms: tuple[str, ...] = ("HS256",)
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0

    @classmethod
    def parse(cls, t: Mapping[str, Any], env: Mapping[str, str], base: Path) -> JwtSettings:
        _known(
            t,
            "[auth]",
            {"key", "key_env", "key_file", "algorithms", "audience", "issuer", "leeway"},
        )
        key: str | None = None
        if "key_env" in t:
            key = env.get(str(t["key_env"]))
            if key is None:
                raise ConfigError(
                    f"[auth]: environment variable {t['key_env']} (key_env) is not set"
                )
        elif "key_file" in t:
            key = (base / str(t["key_file"])).read_text()
        elif "key" in t:
            key = str(t["key"])
        algs = tuple(str(a) for a in t.get("algorithms", ("HS256",)))
        bad = [
            a
            for a in algs
            if a
            not in ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA")
        ]
        if bad or not algs:
            raise ConfigError(f"[auth]: unsupported algorithms {bad or '(none)'}")
        return cls(key, algs, t.get("audience"), t.get("issuer"), float(t.get("leeway", 30)))


@dataclass(frozen=True)
class GatewayConfig:
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    listen: str = "127.0.0.1:8082"
    max_body: int = 1024 * 1024
    delivery_timeout_ms: int = 10_000
    linger_ms: int = 5  # the producer's batching wait (librdkafka linger.ms); docs/gateway.md
    retry_after: int = 5  # seconds, in 503 answers
    inbound: tuple[InboundRoute, ...] = ()
    push: tuple[PushRoute, ...] = ()
    outbound: tuple[OutboundSubscription, ...] = ()
    jwt: JwtSettings = field(default_factory=JwtSettings)
    rest: bool = False  # Confluent REST Proxy v3 produce API under /v3
    create_topics: bool = True  # create missing route topics at start (1 partition... see docs)
    websocket: str = (
        "websockets-sansio"  # uvicorn's WebSocket protocol: websockets-sansio | wsproto
    )
    ws_max_size: int = 16 * 1024 * 1024  # bytes of one message from a client (uvicorn's default)
    ws_per_message_deflate: bool = (
        False  # permessage-deflate: ~37 KiB more per connection (docs/gateway.md)
    )

    def server_options(self) -> dict[str, Any]:
        """uvicorn's settings (riverbed.web.HttpServer passes them on): httptools with each
        turn's writes in one send (a response's head and body: one syscall, not two), and the
        WebSocket protocol's."""
        return {
            "http": "riverbed.web.coalesce:CoalescingHttpToolsProtocol",
            "ws": self.websocket,
            "ws_max_size": self.ws_max_size,
            "ws_per_message_deflate": self.ws_per_message_deflate,
        }

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], env: Mapping[str, str] | None = None, base: Path | None = None
    ) -> GatewayConfig:
        env = os.environ if env is None else env
        _known(doc, "gateway.toml", {"cluster", "gateway", "auth", "webhooks", "push", "rest"})
        gw = doc.get("gateway", {})
        _known(
            gw,
            "[gateway]",
            {
                "listen",
                "max_body",
                "delivery_timeout_ms",
                "linger_ms",
                "retry_after",
                "create_topics",
                "websocket",
                "ws_max_size",
                "ws_per_message_deflate",
            },
        )
        websocket = str(gw.get("websocket", cls.websocket))
        if websocket not in ("websockets-sansio", "wsproto"):
            raise ConfigError(
                f"[gateway] websocket must be websockets-sansio or wsproto, not {websocket!r}"
            )
        if websocket == "wsproto" and importlib.util.find_spec("wsproto") is None:
            raise ConfigError(
                "[gateway] websocket = 'wsproto' needs the wsproto package: pip install wsproto"
            )
        hooks = doc.get("webhooks", {})
        _known(hooks, "[webhooks]", {"in", "out"})
        rest = doc.get("rest", {})
        _known(rest, "[rest]", {"enabled"})
        inbound = tuple(InboundRoute.parse(t, env) for t in hooks.get("in", ()))
        push = tuple(PushRoute.parse(t) for t in doc.get("push", ()))
        paths = [r.path for r in inbound] + [r.path for r in push]
        dup = sorted({p for p in paths if paths.count(p) > 1})
        if dup:
            raise ConfigError(f"paths used twice: {', '.join(dup)}")
        outbound = tuple(OutboundSubscription.parse(t, env) for t in hooks.get("out", ()))
        names = [s.name for s in outbound]
        if len(set(names)) != len(names):
            raise ConfigError("[[webhooks.out]] names must be unique")
        jwt = JwtSettings.parse(doc.get("auth", {}), env, base or Path.cwd())
        if (
            any(r.auth == "jwt" for r in push) or any(r.auth == "jwt" for r in inbound)
        ) and not jwt.key:
            raise ConfigError("[auth]: routes with auth = 'jwt' need key, key_env or key_file")
        return cls(
            cluster=ClusterSettings.from_mapping(doc.get("cluster", {}), env),
            listen=str(gw.get("listen", "127.0.0.1:8082")),
            max_body=int(gw.get("max_body", 1024 * 1024)),
            delivery_timeout_ms=int(gw.get("delivery_timeout_ms", 10_000)),
            linger_ms=int(gw.get("linger_ms", cls.linger_ms)),
            retry_after=int(gw.get("retry_after", 5)),
            inbound=inbound,
            push=push,
            outbound=outbound,
            jwt=jwt,
            rest=bool(rest.get("enabled", False)),
            create_topics=bool(gw.get("create_topics", True)),
            websocket=websocket,
            ws_max_size=int(gw.get("ws_max_size", cls.ws_max_size)),
            ws_per_message_deflate=bool(
                gw.get("ws_per_message_deflate", cls.ws_per_message_deflate)
            ),
        )

    @classmethod
    def load(cls, path: Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cls.from_mapping(doc, env, path.parent)
