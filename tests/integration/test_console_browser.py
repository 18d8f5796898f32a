"""The console in a real headless browser: Debian's chromium (/usr/bin/chromium, installed by
scripts/setup dev) driven by Playwright. Create a topic, produce from the form, find the record
with a filter, watch a group's lag appear and drop to zero, reset its offsets after a dry run,
register a schema and browse decoded Avro records, see a live tail. With
RIVERBED_CONSOLE_SCREENSHOTS=1 the main pages are saved to docs/console-*.png."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from riverbed.client import ClusterSettings
from riverbed.console import ConsoleConfig, ConsoleService
from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"
playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (scripts/setup dev installs it)", allow_module_level=True)

expect = playwright_api.expect


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[EmbeddedBroker, RegistryService, ConsoleService]]:
    with EmbeddedBroker(**FIXTURE_DEFAULTS) as broker, RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")) as registry:
        config = ConsoleConfig(ClusterSettings(broker.bootstrap, registry_url=registry.url), refresh_s=0.3)
        with ConsoleService(config) as console:
            yield broker, registry, console


@pytest.fixture(scope="module")
def page(stack: tuple[EmbeddedBroker, RegistryService, ConsoleService]) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=stack[2].url)
        context.set_default_timeout(15_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        yield pg
        browser.close()
        assert errors == [], errors  # no script errors and no CSP violations on any page


def shot(page: Any, name: str) -> None:
    if os.environ.get("RIVERBED_CONSOLE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=False)


def reload_until(page: Any, check: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
        page.reload()


def test_topic_produce_filter_lag_reset(page: Any, stack: tuple[EmbeddedBroker, RegistryService, ConsoleService]) -> None:
    broker = stack[0]
    topic, group = f"orders-{uuid.uuid4().hex[:6]}", f"billing-{uuid.uuid4().hex[:6]}"
    # create a topic from the form
    page.goto("/topics")
    page.click("#new-topic")
    page.fill("input[name=name]", topic)
    page.fill("input[name=partitions]", "2")
    page.fill("textarea[name=configs]", "retention.ms=604800000")
    page.click("#create-topic button[type=submit]")
    expect(page.locator("#topic-name")).to_have_text(topic)
    expect(page.locator("#partitions tbody tr")).to_have_count(2)
    # produce two records from the form
    for key, value in (("order-1", '{"user": {"id": 42}, "total": 9.5}'), ("order-2", '{"user": {"id": 7}, "total": 1}')):
        page.goto(f"/topics/{topic}/produce")
        page.fill("input[name=key]", key)
        page.fill("textarea[name=value]", value)
        page.fill("textarea[name=headers]", "origin: web")
        page.fill("input[name=partition]", "0")
        page.click("#produce button[type=submit]")
        expect(page.locator("#produced")).to_contain_text("Produced to partition 0")
    # find one with a JSON path filter; the filter is in the URL
    page.goto(f"/topics/{topic}/messages")
    expect(page.locator("#records tr.record")).to_have_count(2)
    page.fill("input[name=json]", "user.id=42")
    page.click("#browse button[type=submit]")
    expect(page.locator("#records tr.record")).to_have_count(1)
    expect(page.locator("#records tr.record")).to_contain_text("order-1")
    assert "json=user.id%3D42" in page.url
    shot(page, "messages")
    page.goto(page.url)  # the shared link shows the same
    expect(page.locator("#records tr.record")).to_have_count(1)
    # a group's lag appears in the topic list and drops to zero
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        page.goto("/topics")
        lag = page.locator(f"#topics a.pill[href='/groups/{group}']")
        reload_until(page, lambda: lag.count() == 1 and lag.inner_text() == f"{group}: 2", "lag 2")
        shot(page, "topics")
        c.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
        reload_until(page, lambda: lag.inner_text() == f"{group}: 0", "lag 0")
    finally:
        c.close()
    # reset its offsets: dry run, then execute
    page.click(f"#topics a.pill[href='/groups/{group}']")
    expect(page.locator("#group-lag")).to_have_text("0")
    page.select_option("#reset select[name=strategy]", "earliest")
    page.click("#reset button[type=submit]")
    expect(page.locator("#reset-plan tbody tr")).to_have_count(1)
    expect(page.locator("#reset-plan tbody tr td").nth(3)).to_have_text("0")
    expect(page.locator("#group-lag")).to_have_text("0")  # a dry run changes nothing
    page.click("#reset-execute button")
    expect(page.locator("#reset-done")).to_be_visible()
    expect(page.locator("#group-lag")).to_have_text("2")
    shot(page, "group")


def test_schema_then_decoded_avro_records(page: Any, stack: tuple[EmbeddedBroker, RegistryService, ConsoleService]) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    broker, registry, _ = stack
    topic = f"payments-{uuid.uuid4().hex[:6]}"
    schema = '{"type": "record", "name": "Payment", "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"}]}'
    page.goto("/schemas")
    page.fill("#goto-subject input[name=subject]", f"{topic}-value")
    page.click("#goto-subject button")
    expect(page.locator("#subject")).to_have_text(f"{topic}-value")
    page.fill("#schema-form textarea[name=schema]", schema)
    page.click("#schema-form button[value=register]")
    expect(page.locator("#schema-text")).to_contain_text('"Payment"')
    sr = SchemaRegistryClient({"url": registry.url})
    try:
        ser = AvroSerializer(sr, schema, conf={"auto.register.schemas": False, "use.latest.version": True})
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(3):
            p.produce(topic, key=f"p{i}", value=ser({"id": f"pay-{i}", "amount": 10.5 * i}, SerializationContext(topic, MessageField.VALUE)))
        assert p.flush(10) == 0
    finally:
        sr.close()
    page.goto(f"/topics/{topic}/messages?mode=earliest")
    rows = page.locator("#records tr.record")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_contain_text('"amount": 21.0')
    expect(rows.nth(0).locator(".kind")).to_contain_text("avro")
    page.fill("input[name=json]", "id=pay-1")
    page.click("#browse button[type=submit]")
    expect(rows).to_have_count(1)
    shot(page, "avro")
    page.goto(f"/schemas/{topic}-value")
    shot(page, "schema")


def test_live_tail_and_overview(page: Any, stack: tuple[EmbeddedBroker, RegistryService, ConsoleService]) -> None:
    broker = stack[0]
    topic = f"clicks-{uuid.uuid4().hex[:6]}"
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=b"first")  # auto-created by the broker
    assert p.flush(10) == 0
    page.goto(f"/topics/{topic}/tail")
    expect(page.locator("#tail-status")).to_have_text(re.compile("live"))
    p.produce(topic, key=b"k", value=b'<b>not bold</b>')
    assert p.flush(10) == 0
    expect(page.locator("#tail tbody tr")).to_have_count(1)
    expect(page.locator("#tail tbody tr")).to_contain_text("<b>not bold</b>")  # shown as text
    assert page.locator("#tail b").count() == 0
    page.goto("/")
    expect(page.locator("h1")).to_have_text("Cluster overview")
    shot(page, "overview")
