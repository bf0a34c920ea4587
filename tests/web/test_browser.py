"""The pages end to end in a real headless Chromium (Debian's ``chromium``, driven by
Playwright through ``executable_path``: Playwright never downloads a browser here): sign in,
filter, search, open a record and its entity's history, see a record committed by the test
arrive in live mode, export, and open the dashboard's chart. A value holding ``<script>``
shows as text and runs nothing."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect
from psycopg import sql

from cdc.web.server import WebServer
from tests.web.conftest import SCRIPT, TOKEN, Platform

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CDC_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# a failed expectation fails in seconds, not after Playwright's default 30 s; the pages' CSP
# forbids eval, so waits go through locators (Playwright's own world), not wait_for_function
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run scripts/bootstrap.sh (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, server: WebServer, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server.access.url, viewport={"width": 1440, "height": 900}, accept_downloads=True
    )
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "401" not in message.text
            else None
        ),
    )
    try:
        yield page
        assert problems == []  # no script ran from a value, no CSP violation, no JS error
    finally:
        context.close()


def sign_in(page: Any) -> None:
    page.goto("/monitor")
    page.wait_for_url(re.compile(r"/login\?next=/monitor$"))
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error:has-text('wrong token')")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/monitor$"))


def rows(page: Any) -> list[str]:
    texts: list[str] = page.locator("#list .record .c-summary").all_inner_texts()
    return texts


def test_monitor_sign_in_filter_search_detail_history_live_export(
    page: Any, platform: Platform, tmp_path: Path
) -> None:
    sign_in(page)
    page.wait_for_selector("#list .record")
    assert rows(page)[0] == "report q3 exported by 42"
    assert page.locator("#status").inner_text().startswith("39 records")

    # a filter: the list and the URL follow it
    page.select_option("select[name=operation]", "update")
    page.click("#filters button[type=submit]")
    expect(page.locator("#list .record")).to_have_count(6)
    assert "operation=update" in page.url

    # full-text search, shared by URL: a fresh page on that URL shows the same view
    page.select_option("select[name=operation]", "")
    page.fill("input[name=search]", "kyc.approved")
    page.press("input[name=search]", "Enter")
    expect(page.locator("#list .record")).to_have_count(5)
    shared = page.url
    page.goto(shared)
    expect(page.locator("#list .record")).to_have_count(5)
    assert page.input_value("input[name=search]") == "kyc.approved"

    # a record's detail: the change as a diff, its transaction, then its entity's history
    page.locator("#list .record").first.click()
    page.wait_for_selector("#detail .diff tr.changed")
    changed = page.locator("#detail .diff tr.changed td.col").all_inner_texts()
    assert "kyc_status" in changed
    assert page.locator("#detail ul.transaction li").count() == 4  # the other 4 approvals
    assert "record=" in page.url
    page.click("#open-history")
    page.wait_for_selector("#history ol.history li")
    history = page.locator("#history ol.history > li > button").all_inner_texts()
    assert [h.split(" · ")[1] for h in history] == ["insert", "update"]

    # a value holding markup is shown as text and runs nothing
    page.goto("/monitor?table=public.notes&operation=insert")
    page.wait_for_selector("#list .record")
    page.locator("#list .record").first.click()
    cell = page.locator("#detail .diff td.new", has_text="<script>")
    assert cell.inner_text() == SCRIPT
    assert page.locator("#detail script, #detail img").count() == 0
    assert page.title() == "Activity monitor · activity-cdc"

    # live: a record committed now appears at the top without a reload
    page.goto("/monitor")
    page.wait_for_selector("#list .record")
    page.check("#live")
    expect(page.locator("#status")).to_contain_text("live")
    platform.commit("INSERT INTO investors VALUES (500, 'Live Investor', 'pending', NULL, '8')")
    expect(page.locator("#list .record .c-entity").first).to_have_text("investor 500")
    assert page.locator("#list .record.fresh").count() == 1
    assert "live=1" in page.url

    # export the current filter: every record of it
    page.goto("/monitor?table=public.investors")
    page.wait_for_selector("#list .record")
    with page.expect_download() as download:
        page.click("#export-csv")
    saved = tmp_path / "export.csv"
    download.value.save_as(saved)
    exported = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert len(exported) == 37 and {r["table_name"] for r in exported} == {"investors"}
    _screenshot(page, "monitor")


def test_live_mode_waits_out_a_store_that_goes_away_and_takes_up_where_it_stopped(
    browser: Any, server: WebServer, platform: Platform
) -> None:
    """A restart of the store under an open monitor: the live view fails, the server refuses
    new ones (503) while the database takes no connections, and live mode stays on, says it is
    paused, tries again with a growing wait, and resumes from where it stopped."""
    context = browser.new_context(base_url=server.access.url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    admin = psycopg.connect(platform.pg.server.dsn, autocommit=True)  # not the test database
    database = sql.Identifier(platform.pg.name)
    try:
        sign_in(page)
        page.wait_for_selector("#list .record")
        page.check("#live")
        expect(page.locator("#status")).to_contain_text("live: new records")
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'activity-cdc web' AND datname = %s",
            (platform.pg.name,),
        )
        # the view's poll fails, its reconnect waits out the pool's 10 s and gets a 503
        expect(page.locator("#status")).to_contain_text("live paused", timeout=60_000)
        assert page.locator("#live").is_checked()
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
        expect(page.locator("#status")).to_contain_text("live: new records", timeout=60_000)
        platform.commit("INSERT INTO investors VALUES (501, 'Back Again', 'pending', NULL, '8')")
        expect(page.locator("#list .record .c-entity").first).to_have_text("investor 501")
        assert page.locator("#list .record .c-entity", has_text="investor 501").count() == 1
        assert errors == []
    finally:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
        admin.close()
        context.close()


def test_dashboard_shows_counts_trend_chart_and_health(page: Any, platform: Platform) -> None:
    sign_in(page)
    page.click("nav a[href='/dashboard']")
    page.wait_for_url(re.compile(r"/dashboard$"))
    page.wait_for_selector("#trend .uplot canvas")
    page.wait_for_selector("#health .card")
    assert page.locator("#total").inner_text().startswith("39 records")
    titles = page.locator("#health .card-title").all_inner_texts()
    assert titles == [
        "LAG",
        "LAST RECORDED COMMIT",
        "ACKNOWLEDGED",
        "RECORDS / S",
        "DEAD LETTERS",
        "SLOT",
        "HASH CHAIN",
    ]
    by = page.locator("#breakdowns h3").all_inner_texts()
    assert by == ["BY SOURCE", "BY CATEGORY", "BY SEVERITY", "BY OPERATION", "BY TABLE"]
    compliance = page.locator("#breakdowns tr", has_text="compliance")
    assert compliance.locator("td.n").inner_text() == "5"
    page.select_option("#window", "7d")
    page.wait_for_url(re.compile(r"since=7d"))
    page.wait_for_selector("#trend .uplot canvas")
    _screenshot(page, "dashboard")


def _screenshot(page: Any, name: str) -> None:
    """With CDC_WEB_SCREENSHOTS=DIR, keep the page as DIR/<name>.png (docs/ uses them)."""
    folder = os.environ.get("CDC_WEB_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"web-{name}.png"), full_page=False)
