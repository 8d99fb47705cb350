"""The policy preview's replay mode in Chromium on a laptop (1366x768), as operations use it: from the tier's
preview form, a lower cap replayed over the last week beside what happened, every table inside the window."""

from __future__ import annotations

import pytest
from django.utils import timezone

from backoffice.roles import OPERATIONS
from tests.factories import make_user
from tests.test_browser import SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)
from tests.test_browser_customer_page import LAPTOP, PASSWORD, log_in
from tests.test_policy_replay import make_recent_book

pytestmark = pytest.mark.browser

MEASURE = """() => {
  const root = document.documentElement;
  const tables = [...document.querySelectorAll('#content-main table')];
  return {page: root.scrollWidth, window: root.clientWidth,
          right: Math.max(0, ...tables.map(t => t.getBoundingClientRect().right))};
}"""


def test_operations_replay_the_last_week_under_a_lower_cap_inside_the_window(
    browser,  # noqa: F811
    live_server,
    transactional_db,
):
    tier = make_recent_book(timezone.localdate())
    make_user("ops", group=OPERATIONS, password=PASSWORD)
    context, page = log_in(browser, live_server.url, "ops", LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/loans/credittier/{tier.pk}/preview/")
        page.fill("#id_max_contacts_per_week", "1")
        page.fill("#id_replay_days", "7")
        page.click("#bo-replay-button")
        page.wait_for_selector('#bo-preview-result[data-mode="replay"]')
        m = page.evaluate(MEASURE)
        header = page.inner_text("#bo-preview-result thead")
        capped = page.inner_text('#bo-preview-result tr[data-code="frequency_cap"]')
        facts = page.inner_text("#bo-replay-facts")
        changed = page.locator("#bo-changed-loans tbody tr").count()
        page.screenshot(path=str(SCREENSHOTS / "policy_replay_ops_1366.png"), full_page=True)
    finally:
        context.close()

    assert m["page"] <= m["window"] and m["right"] <= LAPTOP["width"]
    assert "what happened" in header.lower() and "replayed" in header.lower()
    assert capped.split()[-3] == "0" and int(capped.split()[-2]) > 0  # happened 0, replayed under a cap of 1
    assert "2 real payments applied" in facts
    assert changed >= 1
