"""Screenshots of the monitor and the dashboard for docs/ (docs/web.md, README).

Run against a server with records, e.g. the demo's::

    cdc demo --serve --port 18080 &
    python tools/web_screenshots.py http://127.0.0.1:18080 /tmp/cdc-web-*/token docs/

Signs in, opens the newest update of a KYC record with its diff and its entity's history on
the monitor, and the dashboard over the last 15 minutes; writes web-monitor.png and
web-dashboard.png. Uses Debian's chromium (like the tests), never a downloaded browser.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.web.test_browser import CHROMIUM, LAUNCH_ARGS


def main(url: str, token_file: str, out: str) -> None:
    token = Path(token_file).read_text().strip()
    folder = Path(out)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(base_url=url, viewport={"width": 1480, "height": 900})
        page.goto("/login?next=/monitor")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/monitor")
        page.wait_for_selector("#list .record")
        page.goto("/monitor?operation=update&search=kyc")
        expect(page.locator("#list .record").first).to_be_visible()
        page.locator("#list .record").first.click()
        page.wait_for_selector("#detail .diff tr.changed")
        page.click("#open-history")
        page.wait_for_selector("#history ol.history li")
        page.locator("#detail h2").scroll_into_view_if_needed()
        page.screenshot(path=str(folder / "web-monitor.png"))
        page.goto("/dashboard?since=15m")
        page.wait_for_selector("#trend .uplot canvas")
        page.wait_for_selector("#health .card")
        page.wait_for_timeout(500)
        page.screenshot(path=str(folder / "web-dashboard.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
