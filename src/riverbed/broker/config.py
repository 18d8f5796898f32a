"""Broker configuration (typed; the CLI fills it from file, environment and flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ListenerConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ListenerSecurity:
    """A listener's effective TLS and SASL settings: its own ``listener.name.<name>.*``
    settings over the broker-wide ones."""

    certificate: str | None
    key: str | None
    key_password: str | None
    ca: str | None
    client_auth: str  # none, requested, required
    principal_mapping_rules: str
    sasl_mechanisms: tuple[str, ...]
    # a reloaded certificate may change its subject / SANs (Kafka's ssl.allow.dn.changes,
    # ssl.allow.san.changes; default: no)
    allow_dn_changes: bool = False
    allow_san_changes: bool = False


# listener.name.<listener>.<setting> TLS files that may change at run time -> ListenerConfig
# attribute (Kafka's names and riverbed's PEM aliases)
LISTENER_TLS_ATTRS = {
    "ssl.keystore.location": "ssl_certificate_location",
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
    "ssl.key.password": "ssl_key_password",
    "ssl.truststore.location": "ssl_ca_location",
    "ssl.ca.location": "ssl_ca_location",
}


@dataclass(slots=True)
class ListenerConfig:
    """One listener (Kafka's ``listeners=NAME://host:port``): where it binds, what security
    protocol it speaks, and the address Metadata/FindCoordinator give clients that came in
    through it (``advertised.listeners``; defaults to the bound address)."""

    name: str
    protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    advertised_port: int | None = None
    # this listener's own security settings (Kafka's listener.name.<name>.<setting>); None:
    # the broker-wide setting
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_client_auth: str | None = None  # also on SASL_SSL listeners (KIP-684)
    ssl_principal_mapping_rules: str | None = None
    sasl_enabled_mechanisms: tuple[str, ...] | None = None
    ssl_allow_dn_changes: bool | None = None
    ssl_allow_san_changes: bool | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def advertised(self, bound_port: int) -> tuple[str, int]:
        host = self.advertised_host or self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return host, self.advertised_port or bound_port


def _split_listener(item: str, what: str) -> tuple[str, str, int]:
    name, sep, rest = item.strip().partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or not name or not colon or not port.isdigit():
        raise ListenerConfigError(f"{what}: expected NAME://HOST:PORT, got {item.strip()!r}")
    return name.strip().upper(), host.strip("[]"), int(port)


def parse_listeners(listeners: str, advertised: str = "", protocol_map: str = "") -> list[ListenerConfig]:
    """Kafka's ``listeners``, ``advertised.listeners`` and ``listener.security.protocol.map``.

    A listener named after a security protocol (``SASL_SSL://:9094``) speaks that protocol
    unless the map says otherwise; any other name must be in the map
    (``listener.security.protocol.map=CLIENT:SASL_SSL,ADMIN:PLAINTEXT``). An empty host
    binds every interface (0.0.0.0)."""
    mapping: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in protocol_map.split(","))):
        name, sep, proto = entry.partition(":")
        proto = proto.strip().upper()
        if not sep or proto not in SECURITY_PROTOCOLS:
            raise ListenerConfigError(f"listener.security.protocol.map: bad entry {entry!r}")
        mapping[name.strip().upper()] = proto
    result: list[ListenerConfig] = []
    for item in filter(None, (i.strip() for i in listeners.split(","))):
        name, host, port = _split_listener(item, "listeners")
        proto = mapping.get(name, name if name in SECURITY_PROTOCOLS else "")
        if not proto:
            raise ListenerConfigError(f"listener {name} is not in listener.security.protocol.map")
        if any(lst.name == name for lst in result):
            raise ListenerConfigError(f"listener {name} is defined twice")
        result.append(ListenerConfig(name, proto, host or "0.0.0.0", port))
    if not result:
        raise ListenerConfigError("listeners: no listener given")
    by_name = {lst.name: lst for lst in result}
    for item in filter(None, (i.strip() for i in advertised.split(","))):
        name, host, port = _split_listener(item, "advertised.listeners")
        if name not in by_name:
            raise ListenerConfigError(f"advertised.listeners: no listener named {name}")
        by_name[name].advertised_host = host or None
        by_name[name].advertised_port = port or None
    return result


@dataclass(slots=True)
class BrokerConfig:
    data_dir: Path = Path("riverbed-data")
    node_id: int = 1
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None  # defaults to host (0.0.0.0 advertises 127.0.0.1)
    advertised_port: int | None = None  # defaults to the bound port
    auto_create_topics: bool = True  # auto.create.topics.enable
    num_partitions: int = 1  # num.partitions for auto-created topics
    # riverbed.accept.replication.factor: accept replication factors above 1 on this single node
    # (the topic gets one replica; min.insync.replicas is then met by it). Off: Kafka's refusal.
    accept_replication_factor: bool = False
    delete_topic_enable: bool = True
    max_request_size: int = 100 * 1024 * 1024  # socket.request.max.bytes
    connections_max_idle_ms: int = 600_000  # connections.max.idle.ms (-1: never)
    retention_check_interval_ms: int = 300_000  # log.retention.check.interval.ms
    producer_id_expiration_ms: int = 86_400_000  # producer.id.expiration.ms
    group_initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    fetch_session_cache_slots: int = 1000  # max.incremental.fetch.session.cache.slots (KIP-227)
    consumer_session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms (KIP-848)
    consumer_heartbeat_interval_ms: int = 5_000  # group.consumer.heartbeat.interval.ms (KIP-848)
    transaction_max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    transactional_id_expiration_ms: int = 604_800_000  # transactional.id.expiration.ms
    transaction_abort_interval_ms: int = 10_000  # transaction.abort.timed.out.transaction.cleanup.interval.ms
    cleaner_enable: bool = True  # log.cleaner.enable
    cleaner_backoff_ms: int = 15_000  # log.cleaner.backoff.ms
    cleaner_dedupe_buffer_size: int = 128 * 1024 * 1024  # log.cleaner.dedupe.buffer.size
    cleaner_io_max_bytes_per_second: float = float("inf")  # log.cleaner.io.max.bytes.per.second
    # ACLs (docs/security-acls.md): off unless authorizer.class.name is set, as in Kafka
    authorizer_enabled: bool = False  # authorizer.class.name (any value turns it on)
    super_users: tuple[str, ...] = ()  # super.users (User:a;User:b)
    allow_everyone_if_no_acl_found: bool = False  # allow.everyone.if.no.acl.found
    flush_syncfs: bool = True  # one syncfs(2) per flush cycle instead of the per-file fsyncs
    # segment .log files kept open at most (the least recently used idle ones are closed and
    # reopened on use); 0: three quarters of the open-files limit (ulimit -n), less 128
    max_open_segment_files: int = 0
    # Tiered storage (docs/configuration.md): no object store unless one of these is set.
    remote_storage_path: str | None = None  # remote.storage.path: a local directory store
    remote_s3_bucket: str | None = None  # remote.storage.s3.bucket
    remote_s3_endpoint: str | None = None  # remote.storage.s3.endpoint (MinIO, moto, ...)
    remote_s3_region: str = "us-east-1"  # remote.storage.s3.region
    remote_s3_access_key: str | None = None  # remote.storage.s3.access.key (else AWS_* env)
    remote_s3_secret_key: str | None = None  # remote.storage.s3.secret.key (else AWS_* env)
    remote_s3_prefix: str = ""  # remote.storage.s3.prefix: prepended to every object key
    remote_reader_cache_bytes: int = 64 * 1024 * 1024  # remote.log.reader.cache.bytes
    remote_task_interval_ms: int = 30_000  # remote.log.manager.task.interval.ms
    remote_reader_threads: int = 10  # remote.log.reader.threads
    remote_retry_backoff_ms: int = 500  # remote.log.manager.task.retry.backoff.ms
    remote_retry_backoff_max_ms: int = 30_000  # remote.log.manager.task.retry.backoff.max.ms
    # Listeners (docs/security.md). Empty: one PLAINTEXT listener on host:port, advertised as
    # advertised_host:advertised_port (the --listen / --advertised flags).
    listeners: list[ListenerConfig] = field(default_factory=list)
    # TLS for SSL and SASL_SSL listeners: PEM files
    ssl_certificate_location: str | None = None  # ssl.certificate.location (server chain, PEM)
    ssl_key_location: str | None = None  # ssl.key.location (private key, PEM)
    ssl_key_password: str | None = None  # ssl.key.password (if the key is encrypted)
    ssl_ca_location: str | None = None  # ssl.ca.location: CAs trusted for client certificates
    ssl_client_auth: str = "none"  # ssl.client.auth: none, requested, required (SSL listeners)
    ssl_principal_mapping_rules: str = "DEFAULT"  # ssl.principal.mapping.rules
    ssl_allow_dn_changes: bool = False  # ssl.allow.dn.changes (certificate reload)
    ssl_allow_san_changes: bool = False  # ssl.allow.san.changes (certificate reload)
    sasl_enabled_mechanisms: tuple[str, ...] = DEFAULT_SASL_MECHANISMS  # sasl.enabled.mechanisms
    connection_failed_authentication_delay_ms: int = 100  # connection.failed.authentication.delay.ms
    # Broker-level defaults for topic configs, by their broker names (log.retention.ms=...).
    log_defaults: dict[str, str] = field(default_factory=dict)
    # Every setting given by Kafka's name in the config file, environment or flags (as
    # written): DescribeConfigs reports these as STATIC_BROKER_CONFIG.
    static_settings: dict[str, str] = field(default_factory=dict)

    @property
    def remote_storage_configured(self) -> bool:
        return bool(self.remote_storage_path or self.remote_s3_bucket)

    def advertised(self, bound_port: int) -> tuple[str, int]:
        host = self.advertised_host or self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return host, self.advertised_port or bound_port

    def listener_security(self, listener: ListenerConfig) -> ListenerSecurity:
        """``listener``'s settings over the broker-wide ones. The broker-wide
        ``ssl.client.auth`` applies to SSL listeners only, as in Kafka; a SASL_SSL listener
        asks for client certificates only with its own ``listener.name.<name>.ssl.client.auth``
        (KIP-684), and its clients are still who SASL says."""

        def pick(own: str | None, broker_wide: str | None) -> str | None:
            return own if own is not None else broker_wide

        if listener.ssl_client_auth is not None:
            client_auth = listener.ssl_client_auth
        else:
            client_auth = self.ssl_client_auth if listener.protocol == "SSL" else "none"
        return ListenerSecurity(
            certificate=pick(listener.ssl_certificate_location, self.ssl_certificate_location),
            key=pick(listener.ssl_key_location, self.ssl_key_location),
            key_password=pick(listener.ssl_key_password, self.ssl_key_password),
            ca=pick(listener.ssl_ca_location, self.ssl_ca_location),
            client_auth=client_auth,
            principal_mapping_rules=pick(listener.ssl_principal_mapping_rules, self.ssl_principal_mapping_rules) or "DEFAULT",
            sasl_mechanisms=listener.sasl_enabled_mechanisms if listener.sasl_enabled_mechanisms is not None else self.sasl_enabled_mechanisms,
            allow_dn_changes=listener.ssl_allow_dn_changes if listener.ssl_allow_dn_changes is not None else self.ssl_allow_dn_changes,
            allow_san_changes=listener.ssl_allow_san_changes if listener.ssl_allow_san_changes is not None else self.ssl_allow_san_changes,
        )

    def effective_listeners(self) -> list[ListenerConfig]:
        """The configured listeners, or the single default PLAINTEXT one from host/port."""
        if self.listeners:
            return list(self.listeners)
        return [ListenerConfig("PLAINTEXT", "PLAINTEXT", self.host, self.port, self.advertised_host, self.advertised_port)]
