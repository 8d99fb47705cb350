"""The logs in Chromium on a laptop (1366x768): the call log's key columns inside the window, and a range of
days typed in the list's filter form narrows the call log and the notification log to those days of the
operator's zone; the search box finds them by customer reference."""

from __future__ import annotations

import pytest

from tests.test_browser import SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)
from tests.test_browser_customer_page import LAPTOP, customer_book, log_in  # noqa: F401  (the shared book)

pytestmark = pytest.mark.browser

COLUMNS = """() => {
  const root = document.documentElement;
  const heads = [...document.querySelectorAll('#result_list thead th')];
  return {page: root.scrollWidth, window: root.clientWidth,
          right: Math.max(...heads.map(h => h.getBoundingClientRect().right)),
          columns: heads.map(h => h.innerText.trim().toLowerCase())};
}"""


def filter_days(page, field, since, until):
    page.fill(f".bo-date-range input[name={field}__from]", since)
    page.fill(f".bo-date-range input[name={field}__to]", until)
    page.locator(".bo-date-range input[type=submit]").click()
    page.wait_for_url(f"**{field}__from={since}**")


def test_a_collector_reads_the_call_log_on_a_laptop_and_narrows_it_to_a_day(
    browser,  # noqa: F811
    live_server,
    customer_book,  # noqa: F811
):
    ref = customer_book["customer"].ref
    context, page = log_in(browser, live_server.url, "collector", LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/collections/callattempt/")
        m = page.evaluate(COLUMNS)
        filter_days(page, "made_at", "2026-12-04", "2026-12-04")
        on_the_day = page.locator("#result_list tbody tr").count()
        page.screenshot(path=str(SCREENSHOTS / "call_log_collector_1366.png"))
        filter_days(page, "made_at", "2026-12-05", "2026-12-06")
        the_days_after = page.locator("#result_list tbody tr").count()
        page.goto(f"{live_server.url}/admin/collections/callattempt/")
        page.fill("#searchbar", ref.lower())
        page.press("#searchbar", "Enter")
        page.wait_for_url("**q=**")
        found = page.locator("#result_list tbody tr").count()
    finally:
        context.close()

    assert m["page"] <= m["window"] and m["right"] <= LAPTOP["width"]
    assert {"made at", "customer", "outcome", "made by", "loans"} <= set(m["columns"])
    assert (on_the_day, the_days_after, found) == (1, 0, 1)


def test_operations_narrow_the_notification_log_to_a_day_of_their_zone(
    browser,  # noqa: F811
    live_server,
    customer_book,  # noqa: F811
):
    context, page = log_in(browser, live_server.url, "ops", LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/notifications/notificationlog/?q={customer_book['customer'].ref}")
        everything = page.locator("#result_list tbody tr").count()
        filter_days(page, "scheduled_for", "2026-12-03", "2026-12-04")
        two_days = page.locator("#result_list tbody tr").count()
        still_searched = page.url
        m = page.evaluate(COLUMNS)
    finally:
        context.close()

    assert (everything, two_days) == (6, 2)
    assert "q=" in still_searched
    assert m["page"] <= m["window"]
