"""Small helpers shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic


def create_topics(bootstrap: str, *topics: NewTopic) -> None:
    """Create topics and wait (the client must stay alive until its futures resolve)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(list(topics)).values():
        fut.result(10)


def stored_log_bytes(store: Path) -> int:
    """The bytes of the finished .log objects under a local object store. An upload in progress
    is a hidden ``.tmp-`` file that is renamed or deleted at any moment: it is not counted, and a
    file that goes away between the listing and its stat counts as nothing."""
    total = 0
    for f in store.rglob("*.log"):
        if f.name.startswith(".tmp-"):
            continue
        try:
            total += f.stat().st_size
        except FileNotFoundError:
            continue
    return total
