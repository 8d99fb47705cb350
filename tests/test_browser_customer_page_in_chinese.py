"""The customer page in Chromium for a Chinese browser (zh-CN), at 1366x768 and 1920x1080: every label (headings,
column heads, field names, filters, buttons, the timeline's sentences) is Chinese; only data stays as it is
(references, the customer's name, amounts' currency codes, the actor's user name)."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import PASSWORD, SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)
from tests.test_browser_customer_page import DESKTOP, LAPTOP, MEASURE, customer_book  # noqa: F401

pytestmark = pytest.mark.browser

# The page's labels: what the product writes, as opposed to the data it shows.
LABELS = """() => {
  const picked = [...document.querySelectorAll(
    '#content h1, #content h2, #content h3, #content th, #content dt, #content label, #content summary,' +
    '#content button, #content input[type=submit], #content option, #content caption, #content .bo-quiet,' +
    '#bo-timeline td:nth-child(2), #nav-sidebar caption, #header #site-name, #user-tools, .breadcrumbs'
  )];
  return picked.map(el => (el.value && el.tagName === 'INPUT') ? el.value : el.innerText).filter(t => t && t.trim());
}"""
# Data that may appear inside a label: references, the demo names, user names, codes that are the same in both
# languages (currency, the DPD abbreviation and its bucket, SMS, ID).
DATA = re.compile(
    r"\b(?:[A-Z]+[-\d][-\w]*|Bob Lee|(?i:collector|ops|compliance)|CNY|DPD|SMS|ID|job:[\w.-]+|YYYY-MM-DD)\b|B\*\*"
)
ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")


def log_in_chinese(browser, base_url, username, viewport):  # noqa: F811
    context = browser.new_context(locale="zh-CN", viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    return context, page


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["laptop", "desktop"])
@pytest.mark.parametrize("username", ["ops", "compliance"])
def test_the_customer_page_in_chinese_shows_no_english_label(
    browser,  # noqa: F811
    live_server,
    customer_book,  # noqa: F811
    username,
    viewport,
):
    url = f"{live_server.url}/admin/loans/customer/{customer_book['customer'].pk}/timeline/"
    context, page = log_in_chinese(browser, live_server.url, username, viewport)
    try:
        page.goto(url)
        for summary in page.locator("#bo-timeline summary").all():
            summary.click()  # the audit events of each entry, as sentences
        labels = page.evaluate(LABELS)
        lang = page.evaluate("() => document.documentElement.lang")
        m = page.evaluate(MEASURE)
        page.screenshot(
            path=str(SCREENSHOTS / f"customer_page_zh_{username}_{viewport['width']}.png"), full_page=True
        )
    finally:
        context.close()

    english = sorted({text for text in labels if ENGLISH_WORD.search(DATA.sub("", text))})
    assert lang == "zh-hans"
    assert english == []
    assert m["page"] <= m["window"]
