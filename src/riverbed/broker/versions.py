"""The ApiVersions table: for each API key, the version range whose semantics riverbed
implements. It grows as coordinators arrive (groups, transactions)."""

from __future__ import annotations

# api key -> (min, max). Produce advertises min 0 (older librdkafka disables compression
# otherwise, as Kafka 4.0 found in KAFKA-18659), but versions 0-2 are answered with
# UNSUPPORTED_VERSION: only magic-2 batches (Produce v3+) are accepted.
# The newest versions of Produce, InitProducerId, AddOffsetsToTxn, EndTxn and TxnOffsetCommit
# only tell the broker that the client understands TRANSACTION_ABORTABLE (KIP-890 part 1);
# EndTxn v5 / Produce v12 (KIP-890 part 2, transaction.version 2) are not offered.
SUPPORTED: dict[int, tuple[int, int]] = {
    0: (0, 11),  # Produce (v9 flexible, v10 KIP-951 leader hints: never NOT_LEADER on one node, v11 KIP-890)
    1: (4, 17),  # Fetch (v7+: KIP-227 sessions; v13+: topic ids)
    2: (1, 10),  # ListOffsets (v8 earliest local, v9 latest tiered, v10 timeout)
    3: (0, 13),  # Metadata (v13: top-level error code)
    8: (2, 9),  # OffsetCommit (v9: KIP-848 member epochs)
    9: (1, 9),  # OffsetFetch (v9: KIP-848 member epochs)
    10: (0, 6),  # FindCoordinator (group and transaction keys; v6 share keys refused)
    11: (0, 9),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 6),  # DescribeGroups (v6: GROUP_ID_NOT_FOUND, KIP-1043)
    16: (0, 5),  # ListGroups (v5: types filter)
    17: (0, 1),  # SaslHandshake (v0: raw tokens follow)
    18: (0, 4),  # ApiVersions
    19: (0, 7),  # CreateTopics
    20: (0, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 5),  # InitProducerId (idempotent and transactional producers)
    24: (0, 3),  # AddPartitionsToTxn (v4+ is the inter-broker batch form)
    25: (0, 4),  # AddOffsetsToTxn
    26: (0, 4),  # EndTxn (v5 is KIP-890 part 2: not offered)
    28: (0, 4),  # TxnOffsetCommit
    29: (0, 3),  # DescribeAcls
    30: (0, 3),  # CreateAcls
    31: (0, 3),  # DeleteAcls
    32: (0, 4),  # DescribeConfigs
    33: (0, 2),  # AlterConfigs
    34: (1, 2),  # AlterReplicaLogDirs (the one log dir; v0 removed in Kafka 4.0)
    35: (0, 4),  # DescribeLogDirs
    36: (0, 2),  # SaslAuthenticate
    37: (0, 3),  # CreatePartitions
    42: (0, 2),  # DeleteGroups
    43: (0, 2),  # ElectLeaders (single node: ELECTION_NOT_NEEDED)
    44: (0, 1),  # IncrementalAlterConfigs
    45: (0, 0),  # AlterPartitionReassignments (to this node only: a no-op)
    46: (0, 0),  # ListPartitionReassignments (never any in progress)
    47: (0, 0),  # OffsetDelete
    50: (0, 0),  # DescribeUserScramCredentials
    51: (0, 0),  # AlterUserScramCredentials
    55: (0, 2),  # DescribeQuorum (this node: the single voter)
    60: (0, 1),  # DescribeCluster
    61: (0, 0),  # DescribeProducers
    65: (0, 0),  # DescribeTransactions
    66: (0, 1),  # ListTransactions
    68: (0, 1),  # ConsumerGroupHeartbeat (KIP-848)
    69: (0, 0),  # ConsumerGroupDescribe (KIP-848)
    75: (0, 0),  # DescribeTopicPartitions (KIP-966)
    # share groups (KIP-932, docs/share-groups.md): the stable versions (v0 was Kafka 4.0's
    # early access, removed in 4.1)
    76: (1, 1),  # ShareGroupHeartbeat
    77: (1, 1),  # ShareGroupDescribe
    78: (1, 2),  # ShareFetch (v2: renew acknowledgements)
    79: (1, 2),  # ShareAcknowledge
    90: (0, 1),  # DescribeShareGroupOffsets (v1: lag)
    91: (0, 0),  # AlterShareGroupOffsets
    92: (0, 0),  # DeleteShareGroupOffsets
}
