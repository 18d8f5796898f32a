"""Small helpers shared by the integration tests."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic


def create_topics(bootstrap: str, *topics: NewTopic) -> None:
    """Create topics and wait (the client must stay alive until its futures resolve)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(list(topics)).values():
        fut.result(10)
