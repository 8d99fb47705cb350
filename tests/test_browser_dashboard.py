"""The 9 o'clock board in Chromium for every role, on a laptop (1366x768) and a wide screen (1920x1080), over the
demo book after a pipeline run: the board never scrolls sideways, every figure is a link (a collector who sees
only their own queue gets the collectors' figures as plain numbers), and the overdue book's total opens the
list of exactly those instalments."""

from __future__ import annotations

import pytest

from tests.test_browser import SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)
from tests.test_browser_layout import DEMO_USERS, DESKTOP, LAPTOP, demo_book, log_in  # noqa: F401

pytestmark = pytest.mark.browser

BOARD = """() => {
  const root = document.documentElement;
  const figures = [...document.querySelectorAll('#bo-dashboard td.num')];
  const bare = figures.filter(td => !td.querySelector('a[href]'));
  return {
    page: root.scrollWidth, window: root.clientWidth, figures: figures.length,
    right: document.querySelector('#bo-dashboard').getBoundingClientRect().right,
    bare: bare.map(td => (td.closest('.module') || {}).id + ': ' + td.innerText.trim()),
  };
}"""


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["laptop", "desktop"])
def test_every_role_reads_the_board_inside_the_window_and_every_figure_opens_its_list(
    browser,  # noqa: F811
    live_server,
    demo_book,  # noqa: F811
    viewport,
):
    seen, total = {}, None
    for username in DEMO_USERS:
        context, page = log_in(browser, live_server.url, username, viewport)
        try:
            seen[username] = page.evaluate(BOARD)
            page.screenshot(
                path=str(SCREENSHOTS / f"dashboard_{username}_{viewport['width']}.png"), full_page=True
            )
            if username == "operations":
                link = page.locator('#bo-overdue tr[data-bucket="total"] td.num a').first
                total = int(link.inner_text().replace(",", ""))
                link.click()
                page.wait_for_url("**/admin/loans/installment/**")
                listed = page.locator("#result_list tbody tr").count()
                counted = page.locator(".paginator").inner_text()
        finally:
            context.close()

    assert {u: m["page"] <= m["window"] and m["right"] <= viewport["width"] for u, m in seen.items()} == {
        u: True for u in DEMO_USERS
    }
    assert all(m["figures"] > 30 for m in seen.values())
    bare = {u: m["bare"] for u, m in seen.items()}
    assert {u: b for u, b in bare.items() if u != "collector"} == {
        u: [] for u in DEMO_USERS if u != "collector"
    }
    assert bare["collector"] and all(b.startswith("bo-collector-tasks: ") for b in bare["collector"])
    assert total and (listed == total or str(total) in counted)
