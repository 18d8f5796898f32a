"""Change data capture from PostgreSQL (logical replication, pgoutput) into Kafka topics as
Debezium change events, the transactional outbox (event router, writer helper, polling relay)
and the connector runtime (offsets in a Kafka topic, heartbeats, slot-lag guardrail).

It is a Kafka client: it reaches the cluster only through ``riverbed.client``.
See docs/connect.md.
"""
