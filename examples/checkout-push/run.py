"""The lecture's edge, in one command: checkout -> 202 Accepted -> payment and order services on
topics -> OrderCompletedEvent -> the user's browser page turns green.

    .venv/bin/python examples/checkout-push/run.py              # own broker, headless chromium
    .venv/bin/python examples/checkout-push/run.py --serve      # keep running; open the URLs

It starts a riverbed broker (riverbed.testing.BrokerProcess), the gateway with the shop's page,
and the two services; then it opens the pages of alice and bob in the system's chromium
(Playwright, `apt-get install chromium`), checks out as alice, and shows what each page got.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shop import Shop

from riverbed.testing import BrokerProcess

CHROMIUM = "/usr/bin/chromium"


def demo(shop: Shop) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            alice, bob = browser.new_page(), browser.new_page()
            alice.goto(shop.page_url("alice"))
            bob.goto(shop.page_url("bob"))
            for page in (alice, bob):
                page.wait_for_function("window.connections >= 1")
            with alice.expect_response("**/api/checkout") as answer:
                alice.click("#checkout")
            print(f"alice's checkout answered HTTP {answer.value.status}")
            alice.wait_for_function("window.received.length >= 1", timeout=20_000)
            print(f"alice's page: {alice.inner_text('#status')} (background {alice.evaluate('document.body.style.background')})")
            time.sleep(0.5)  # give a wrongly routed event the time to show up on bob's page
            print(f"bob's page: {bob.inner_text('#status')} ({bob.evaluate('window.received.length')} orders)")
        finally:
            browser.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="use this cluster instead of starting a broker")
    ap.add_argument("--serve", action="store_true", help="keep running (open the printed URLs in a browser)")
    ap.add_argument("--port", type=int, default=0, help="HTTP port of the gateway (default: a free one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="checkout-push-") as tmp:
        broker = None if args.bootstrap else BrokerProcess(Path(tmp) / "data").start()
        shop = Shop(args.bootstrap or (broker.bootstrap if broker else ""), args.port).start()
        try:
            print(f"gateway on {shop.url}")
            if args.serve:
                for user in ("alice", "bob"):
                    print(f"  {user}: {shop.page_url(user)}")
                print("Ctrl-C to stop")
                while True:
                    time.sleep(1)
            return demo(shop)
        except KeyboardInterrupt:
            return 0
        finally:
            shop.stop()
            if broker is not None:
                broker.terminate()


if __name__ == "__main__":
    sys.exit(main())
