"""RetryPolicy's topic names and the header helpers (the broker-facing parts are in
tests/integration/test_messaging_deadletter.py)."""

from __future__ import annotations

from riverbed.messaging.deadletter import MAX_TEXT, RetryPolicy, _text, header


def test_retry_topic_names_follow_the_delays() -> None:
    policy = RetryPolicy(retry_delays=(60, 600, 7200, 5, 0.25))
    assert policy.topics("orders") == [
        "orders",
        "orders.retry.1m",
        "orders.retry.10m",
        "orders.retry.2h",
        "orders.retry.5s",
        "orders.retry.250ms",
        "orders.DLQ",
    ]
    assert RetryPolicy(blocking=True).topics("ledger") == ["ledger", "ledger.DLQ"]
    # a repeated delay gets its own topic (a hop is one topic)
    assert RetryPolicy(retry_delays=(1, 1, 60, 1)).topics("o")[1:-1] == ["o.retry.1s", "o.retry.1s-1", "o.retry.1m", "o.retry.1s-2"]
    assert RetryPolicy(dlq_suffix="-dlt").dlq_topic("orders") == "orders-dlt"


def test_header_reads_the_last_value_and_survives_garbage() -> None:
    h = [("a", b"1"), ("a", b"2"), ("b", b"\xff"), ("c", None)]
    assert header(h, "a") == "2"
    assert header(h, "b") is None  # not UTF-8: ignored, no crash
    assert header(h, "c") is None
    assert header(None, "a") is None


def test_long_texts_are_capped() -> None:
    assert len(_text("x" * 100_000)) == MAX_TEXT
    assert _text("short") == b"short"


def test_commit_every_must_be_positive() -> None:
    import pytest

    from riverbed.messaging.deadletter import DeadLetterConsumer

    with pytest.raises(ValueError, match="commit_every"):
        DeadLetterConsumer(consumer=None, producer=None, handler=print, commit_every=0)
