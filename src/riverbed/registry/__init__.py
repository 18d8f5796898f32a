"""A Confluent-compatible schema registry. It reaches the cluster only through a Kafka client
(its state is the compacted `_schemas` topic, in Confluent's record layout) and so runs
unchanged against Apache Kafka."""
