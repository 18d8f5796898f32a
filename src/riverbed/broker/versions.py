"""The ApiVersions table: for each API key, the version range whose semantics riverbed
implements. It grows as coordinators arrive (groups, transactions)."""

from __future__ import annotations

# api key -> (min, max). Produce advertises min 0 (older librdkafka disables compression
# otherwise, as Kafka 4.0 found in KAFKA-18659), but versions 0-2 are answered with
# UNSUPPORTED_VERSION: only magic-2 batches (Produce v3+) are accepted.
SUPPORTED: dict[int, tuple[int, int]] = {
    0: (0, 8),  # Produce
    1: (4, 11),  # Fetch
    2: (1, 7),  # ListOffsets
    3: (0, 12),  # Metadata
    18: (0, 3),  # ApiVersions
    19: (0, 7),  # CreateTopics
    20: (0, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 4),  # InitProducerId (idempotent producers; transactional ids not yet)
    32: (0, 4),  # DescribeConfigs
    33: (0, 2),  # AlterConfigs
    37: (0, 3),  # CreatePartitions
    44: (0, 1),  # IncrementalAlterConfigs
    60: (0, 1),  # DescribeCluster
}
