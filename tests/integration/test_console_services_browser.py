"""The console's Services page in a real headless browser (Debian's chromium through
Playwright): a running streams app, a SQL persistent query and a failed streams app report in
to ``_riverbed_services``; the page lists them with state, figures and the metrics link, marks
the failed one stale once its heartbeats stop, and drops a cleanly stopped app."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from riverbed.client import ClusterSettings
from riverbed.console import ConsoleConfig, ConsoleService
from riverbed.sql.engine import Engine
from riverbed.sql.server import SqlServer
from riverbed.streams import LONG, STRING, StreamsApp
from riverbed.streams.runtime import Runtime
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker, free_port

from .helpers import create_topics
from .test_streams import produce

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (scripts/setup dev installs it)", allow_module_level=True)

expect = playwright_api.expect


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, ConsoleService]]:
    with EmbeddedBroker(tmp_path_factory.mktemp("services-broker"), **FIXTURE_DEFAULTS) as broker:
        console = ConsoleService(ConsoleConfig(ClusterSettings(broker.bootstrap), refresh_s=0.3)).start()
        try:
            yield broker, console
        finally:
            console.stop()


@pytest.fixture(scope="module")
def page(stack: tuple[EmbeddedBroker, ConsoleService]) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=stack[1].url)
        context.set_default_timeout(15_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        yield pg
        browser.close()
        assert errors == [], errors


def reload_until(page: Any, check: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; the page says: {page.inner_text('main')}")
        time.sleep(0.3)
        page.reload()


class Background:
    """A runtime in a thread; what it raised, if anything."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.rt.run()
        except BaseException as e:
            self.error = e

    def stop(self) -> None:
        self.rt.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_services_page(page: Any, stack: tuple[EmbeddedBroker, ConsoleService], tmp_path: Path) -> None:
    bs = stack[0].bootstrap
    page.goto("/services")
    expect(page.locator("#no-services-topic")).to_be_visible()
    tag = uuid.uuid4().hex[:6]
    create_topics(bs, NewTopic(f"lines-{tag}", 1, 1), NewTopic(f"out-{tag}", 1, 1), NewTopic(f"bad-{tag}", 1, 1))
    produce(bs, f"lines-{tag}", [(None, "a b a", 1)])

    good = StreamsApp(f"wc-{tag}")
    (good.stream(f"lines-{tag}", STRING, STRING).flat_map_values(str.split).group_by(lambda _k, w: w, key_serde=STRING)
         .count(name="counts").to_stream().to(f"out-{tag}", STRING, LONG))
    port = free_port()
    running = Background(Runtime(good.topology(), bs, state_dir=tmp_path / "wc", commit_interval_ms=200,
                                 metrics_port=port, status_interval_s=0.5))
    bad = StreamsApp(f"fails-{tag}")
    bad.stream(f"bad-{tag}", STRING, STRING).map_values(lambda v: 1 // 0).to(f"out-{tag}", STRING, STRING)
    failing = Background(Runtime(bad.topology(), bs, in_memory_stores=True, status_interval_s=0.5))
    engine = Engine(ClusterSettings(bs), service_id=f"s{tag}_", state_dir=tmp_path / "sql", commit_interval_ms=200)
    sql = SqlServer(engine, "127.0.0.1", 0).start()
    try:
        engine.execute(f"CREATE STREAM src_{tag} (w VARCHAR) WITH (kafka_topic='lines-{tag}', value_format='KAFKA');")
        engine.execute(f"CREATE STREAM upper_{tag} AS SELECT UCASE(w) AS w FROM src_{tag} EMIT CHANGES;")
        (qid,) = list(engine.queries)

        page.goto("/services")
        good_row = page.locator("#services-streams tr", has_text=f"wc-{tag}")
        reload_until(page, lambda: good_row.count() == 1 and "RUNNING" in good_row.inner_text()
                     and "consumed 4" in good_row.inner_text(), "the streams app, running, 4 records consumed (1 line, 3 words)")
        expect(good_row.locator("a")).to_have_attribute("href", f"http://127.0.0.1:{port}/metrics")
        expect(good_row.locator(".stale-badge")).to_have_count(0)
        sql_row = page.locator("#services-sql tr", has_text=qid)
        reload_until(page, lambda: sql_row.count() == 1 and "RUNNING" in sql_row.inner_text(), "the SQL query")
        expect(sql_row).to_contain_text(f"UPPER_{tag}".upper())
        expect(sql_row.locator("a")).to_have_attribute("href", f"{sql.url}/metrics")

        # the failing app: ERROR, then stale once its heartbeats have stopped for 3 intervals
        produce(bs, f"bad-{tag}", [(None, "x", 1)])
        bad_row = page.locator("#services-streams tr", has_text=f"fails-{tag}")
        reload_until(page, lambda: bad_row.count() == 1 and "ERROR" in bad_row.inner_text(), "the failed app, ERROR")
        reload_until(page, lambda: bad_row.locator(".stale-badge").count() == 1, "the failed app, stale")
        assert failing.error is not None and "ZeroDivisionError" in str(failing.error)

        page.goto("/services?kind=sql")  # one kind only
        expect(page.locator("#services-streams")).to_have_count(0)
        expect(page.locator("#services-sql tr", has_text=qid)).to_have_count(1)
        if os.environ.get("RIVERBED_CONSOLE_SCREENSHOTS") == "1":
            page.goto("/services")
            page.screenshot(path=str(Path(__file__).resolve().parents[2] / "docs" / "console-services.png"))

        # a clean stop: the app leaves the list
        running.stop()
        assert running.error is None
        page.goto("/services")
        reload_until(page, lambda: page.locator("#services-streams tr", has_text=f"wc-{tag}").count() == 0, "the stopped app gone")
    finally:
        running.stop()
        failing.stop()
        sql.stop()
