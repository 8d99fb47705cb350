"""The Exports list in Chromium, as a compliance officer uses it on a laptop (1366x768) and a wide screen: an
export of one customer's contacts made from the notification log's form, then the customer's reference typed
in the Exports list's search box finds it (and the export searched for that customer), not the others; every
column is inside the window."""

from __future__ import annotations

import pytest

from core.exports.jobs import start_export
from tests.factories import make_customer
from tests.test_browser import SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)
from tests.test_browser_customer_page import DESKTOP, LAPTOP, customer_book, log_in  # noqa: F401
from tests.test_browser_find_in_logs import COLUMNS

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["laptop", "desktop"])
def test_a_compliance_officer_finds_the_exports_about_a_customer_by_reference(
    browser,  # noqa: F811
    live_server,
    customer_book,  # noqa: F811
    django_user_model,
    viewport,
):
    ref = customer_book["customer"].ref
    officer = django_user_model.objects.get(username="compliance")
    start_export(officer, "audit", "csv", {"q": ref})
    start_export(officer, "notifications", "csv", {"customer_ref": make_customer().ref})
    start_export(officer, "notifications", "csv", {})
    context, page = log_in(browser, live_server.url, "compliance", viewport)
    try:
        page.goto(f"{live_server.url}/admin/notifications/notificationlog/")
        page.fill("#bo-export-customer", ref.lower())
        with page.expect_download() as download:
            page.locator("#bo-export-form button[type=submit]").click()
        exported = download.value.suggested_filename
        page.goto(f"{live_server.url}/admin/core/exportjob/")
        listed = page.locator("#result_list tbody tr").count()
        page.fill("#searchbar", ref.lower())
        page.press("#searchbar", "Enter")
        page.wait_for_url("**q=**")
        found = page.locator("#result_list tbody tr").evaluate_all(
            "rows => rows.map(r => r.querySelector('.field-customer').innerText.trim())"
        )
        m = page.evaluate(COLUMNS)
        page.screenshot(path=str(SCREENSHOTS / f"export_jobs_compliance_{viewport['width']}.png"))
    finally:
        context.close()

    assert exported.startswith("notifications-") and exported.endswith(".csv")
    assert listed == 4
    assert sorted(found) == sorted([ref.lower(), f"search “{ref}”"])
    assert m["page"] <= m["window"] and m["right"] <= viewport["width"]
    columns = {heading.split("\n")[-1].strip() for heading in m["columns"]}  # "1\ncreated at": sorted by it
    assert {"customer or search", "status", "created at", "kind"} <= columns
