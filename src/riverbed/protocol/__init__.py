"""Sans-io Kafka protocol: bytes in, typed messages out. No sockets, clock or disk here."""
