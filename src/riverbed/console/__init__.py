"""The web console: a cluster overview, topics with sizes, retention and the lag of every
consuming group, a message browser that decodes schema-registry formats, live tail, consumer
groups with offset resets, schemas, ACLs, users and transactions. It reaches the cluster only
through confluent-kafka (and two requests of riverbed's sans-io codec that the AdminClient lacks)
and the registry's HTTP API, so it runs against any Kafka-compatible cluster. See
docs/console.md."""

from .app import Console, ConsoleConfig, create_console_app
from .service import ConsoleService, run

__all__ = ["Console", "ConsoleConfig", "ConsoleService", "create_console_app", "run"]
