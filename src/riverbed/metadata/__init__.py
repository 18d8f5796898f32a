"""Cluster metadata: topics, partitions, configs (with Kafka's defaults). Durable, own interface."""
