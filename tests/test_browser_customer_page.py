"""The customer page in Chromium, as each role uses it, on a laptop (1366x768) and a wide screen (1920x1080).

Each role opens the same customer: the summary, the loans' standing and the timeline are in the window without
scrolling sideways, and the timeline's filters work from the form (the "Calls" choice shows the calls made, a
range of days narrows every kind of entry). Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from backoffice.roles import COLLECTOR, COMPLIANCE_OFFICER, OPERATIONS
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import CallAttempt, PromiseToPay
from loans.services import record_payment
from notifications.models import NotificationLog
from tests.factories import make_installment, make_loan, make_tier, make_user
from tests.factories_collections import DUE, day, make_ladder, make_overdue_loan, open_tasks
from tests.factories_operator import make_log
from tests.test_browser import PASSWORD, SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1366, "height": 768}
DESKTOP = {"width": 1920, "height": 1080}
ROLES = {"ops": OPERATIONS, "collector": COLLECTOR, "compliance": COMPLIANCE_OFFICER}

MEASURE = """() => {
  const root = document.documentElement;
  const widest = ['#bo-glance', '#bo-standing', '#bo-timeline'].map(s => {
    const el = document.querySelector(s);
    return el ? el.getBoundingClientRect().right : 0;
  });
  return {page: root.scrollWidth, window: root.clientWidth, right: Math.max(...widest)};
}"""


@pytest.fixture
def customer_book(transactional_db):
    collector = make_user("collector", group=COLLECTOR, password=PASSWORD)
    make_user("ops", group=OPERATIONS, password=PASSWORD)
    make_user("compliance", group=COMPLIANCE_OFFICER, password=PASSWORD)
    tier = make_tier(grace_period_days=2, max_contacts_per_week=50)
    make_ladder(tier, [(1, "call", "call_task", "")])
    loan = make_overdue_loan(tier, name="Bob Lee", phone="+8613800138000", installments=2)
    customer = loan.customer
    make_installment(make_loan(customer, ref="L-LATER"), due_date=DUE + dt.timedelta(days=60))
    advance_collections(day(3))
    [task] = open_tasks(loan)
    record_call_outcome(task, outcome="no_answer", actor=collector, at=day(3, hour=11))
    record_payment(loan=loan, amount=Decimal("100"), received_at=day(3, hour=12), ref="PAY-1")
    PromiseToPay.objects.create(
        case=task.case, amount=Decimal("400"), promised_date=DUE + dt.timedelta(days=6), created_at=day(3, 13)
    )
    for n in range(6):
        make_log(
            customer,
            installments=list(loan.installments.all()),
            status=NotificationLog.Status.SUPPRESSED,
            reason=NotificationLog.Reason.FREQUENCY_CAP,
            scheduled_for=day(n, hour=9),
            body="Bob Lee, your instalment of CNY 500.00 is overdue. Pay at https://pay.example.com/x " * 2,
        )
    return {"customer": customer, "call": CallAttempt.objects.get(task=task)}


def log_in(browser, base_url, username, viewport):  # noqa: F811
    context = browser.new_context(locale="en-US", viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    return context, page


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["laptop", "desktop"])
def test_every_role_reads_the_customer_page_inside_the_window(
    browser,  # noqa: F811
    live_server,
    customer_book,
    viewport,
):
    url = f"{live_server.url}/admin/loans/customer/{customer_book['customer'].pk}/timeline/"
    seen = {}
    for username in ROLES:
        context, page = log_in(browser, live_server.url, username, viewport)
        try:
            page.goto(url)
            m = page.evaluate(MEASURE)
            call_row = page.locator(f"#call-{customer_book['call'].pk}")
            call_row.locator("xpath=following-sibling::tr[1]//summary").click()  # its audit events
            seen[username] = {
                "fits": m["page"] <= m["window"] and m["right"] <= viewport["width"],
                "standing": page.locator("#bo-standing").inner_text(),
                "sentences": call_row.locator("xpath=following-sibling::tr[1]").inner_text(),
                "name": "Bob Lee" in page.locator("#bo-who").inner_text(),
            }
            page.screenshot(path=str(SCREENSHOTS / f"customer_page_{username}_{viewport['width']}.png"))
        finally:
            context.close()

    assert {u: s["fits"] for u, s in seen.items()} == {u: True for u in ROLES}
    assert all("CNY 900.00" in s["standing"] for s in seen.values())
    assert all("Call recorded by collector: no answer" in s["sentences"] for s in seen.values())
    assert {u: s["name"] for u, s in seen.items()} == {"ops": True, "collector": True, "compliance": False}


def test_a_collector_filters_the_timeline_to_the_calls_and_to_a_day(browser, live_server, customer_book):  # noqa: F811
    context, page = log_in(browser, live_server.url, "collector", LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/loans/customer/{customer_book['customer'].pk}/timeline/")
        page.select_option("select[name=show]", "call")
        page.click(".bo-filters input[type=submit]")
        page.wait_for_url("**show=call**")
        calls = page.locator("#bo-timeline tbody tr[data-kind]").evaluate_all(
            "rows => rows.map(r => r.dataset.kind)"
        )
        page.select_option("select[name=show]", "")
        page.fill("input[name=since]", "2026-12-04")
        page.fill("input[name=until]", "2026-12-04")
        page.click(".bo-filters input[type=submit]")
        page.wait_for_url("**since=2026-12-04**")
        on_the_day = page.locator("#bo-timeline tbody tr[data-kind]").evaluate_all(
            "rows => rows.map(r => r.dataset.kind)"
        )
    finally:
        context.close()

    assert calls == ["call"]
    assert sorted(set(on_the_day)) == ["call", "message", "payment", "promise"]
    assert on_the_day.count("message") == 1
