"""examples/checkout-push in a real headless browser (Debian's chromium driven by Playwright):
the page turns green on its own user's OrderCompletedEvent, sees only its user's events, and
resumes without loss or repeats after a forced reconnect."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (scripts/setup dev installs Debian's chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (scripts/setup dev)")


def load_shop() -> Any:
    spec = importlib.util.spec_from_file_location("checkout_push_shop", ROOT / "examples/checkout-push/shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_run_py_one_command() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples/checkout-push/run.py")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "alice's checkout answered HTTP 202" in lines
    assert any(line.startswith("alice's page: Order Complete! order-") and "rgb(51, 204, 51)" in line for line in lines)
    assert "bob's page: Not ordered yet (0 orders)" in lines


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with EmbeddedBroker(tmp_path_factory.mktemp("shop"), **FIXTURE_DEFAULTS) as broker:
        s = load_shop().Shop(broker.bootstrap).start()
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_each_page_sees_only_its_user_and_resumes_after_a_forced_reconnect(shop: Any, browser: Any) -> None:
    alice, bob = browser.new_page(), browser.new_page()
    try:
        alice.goto(shop.page_url("alice"))
        bob.goto(shop.page_url("bob"))
        for page in (alice, bob):
            page.wait_for_function("window.connections === 1")
        for page, n in ((alice, 2), (bob, 1)):
            for _ in range(n):
                with page.expect_response("**/api/checkout") as answer:
                    page.click("#checkout")
                assert answer.value.status == 202
        alice.wait_for_function("window.received.length === 2", timeout=20_000)
        bob.wait_for_function("window.received.length === 1", timeout=20_000)
        assert alice.evaluate("document.body.style.background") == "rgb(51, 204, 51)"
        assert "Order Complete!" in alice.inner_text("#status")
        first_alice, first_bob = alice.evaluate("window.received"), bob.evaluate("window.received")
        assert not set(first_alice) & set(first_bob)

        # the gateway drops every stream; orders complete while the pages are away
        shop.gateway.drop_push_clients()
        missed = [shop.complete_order_directly("alice") for _ in range(3)]
        other = shop.complete_order_directly("bob")
        for page in (alice, bob):
            page.wait_for_function("window.connections === 2", timeout=20_000)
        alice.wait_for_function("window.received.length === 5", timeout=20_000)
        bob.wait_for_function("window.received.length === 2", timeout=20_000)
        # the EventSource sent Last-Event-ID: every missed event once, in order, nothing else
        assert alice.evaluate("window.received") == [*first_alice, *missed]
        assert bob.evaluate("window.received") == [*first_bob, other]
    finally:
        alice.close()
        bob.close()
