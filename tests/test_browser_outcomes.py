"""The outcomes page in Chromium on a laptop (1366x768): operations and compliance read a champion, challenger
and holdout side by side, every chart inside the window, and compliance exports the figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from backoffice.roles import COMPLIANCE_OFFICER, OPERATIONS
from loans.models import Arm, PolicyAssignment
from strategy.experiments import start_test
from strategy.outcomes import run_outcomes
from strategy.policy import Policy, RuleSpec
from tests.test_browser import SCREENSHOTS, browser  # noqa: F401  (the module's Chromium)
from tests.test_browser_customer_page import LAPTOP, PASSWORD, log_in

from .factories import make_tier, make_user
from .factories_collections import day, make_overdue_loan, pay
from .factories_reminders import make_rule

pytestmark = pytest.mark.browser

MEASURE = """() => {
  const root = document.documentElement;
  const charts = [...document.querySelectorAll('.bo-outcome-chart')];
  return {page: root.scrollWidth, window: root.clientWidth, charts: charts.length,
          right: Math.max(0, ...charts.map(c => c.getBoundingClientRect().right)),
          whiskers: document.querySelectorAll('.bo-outcome-chart .whisker').length};
}"""


@pytest.fixture
def outcome_book(transactional_db):
    make_user("ops", group=OPERATIONS, password=PASSWORD)
    make_user("compliance", group=COMPLIANCE_OFFICER, password=PASSWORD)
    tier = make_tier(code="CC", name="Tested")
    make_rule(tier, -3)
    test = start_test(
        tier,
        challenger=Policy.of(tier).changed(rules=(RuleSpec(-1, "sms", "pre_due", dt.time(9, 0)),)),
        challenger_share=Decimal("0.4"),
        holdout_share=Decimal("0.2"),
        actor="ops",
        reason="browser",
        at=day(-30),
    )
    for n in range(12):
        loan = make_overdue_loan(tier)
        arm = Arm.values[n % 3]
        PolicyAssignment.objects.create(
            customer=loan.customer,
            tier=tier,
            seed=test.seed,
            arm=arm,
            policy_version=test.challenger if arm == Arm.CHALLENGER else None,
            assigned_at=day(-30),
        )
        if n % 2:
            pay(loan, Decimal("500.00"), day(-1))
    run_outcomes(day(40))
    return tier


@pytest.mark.parametrize("username", ["ops", "compliance"])
def test_the_outcomes_page_fits_a_laptop_for_operations_and_compliance(
    browser,  # noqa: F811
    live_server,
    outcome_book,
    username,
):
    context, page = log_in(browser, live_server.url, username, LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/strategy/outcomes/?tier={outcome_book.pk}")
        m = page.evaluate(MEASURE)
        text = page.inner_text("#content-main")
        page.screenshot(path=str(SCREENSHOTS / f"outcomes_{username}_1366.png"), full_page=True)
        with page.expect_download() as download:
            page.locator("#bo-outcomes-export button[value=csv]").click()
        name = download.value.suggested_filename
    finally:
        context.close()

    assert m["page"] <= m["window"] and m["right"] <= LAPTOP["width"]
    assert m["charts"] >= 3 and m["whiskers"] >= 9
    assert "champion" in text and "challenger" in text and "holdout" in text
    assert name.endswith(".csv")
