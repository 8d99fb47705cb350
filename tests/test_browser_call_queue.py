"""The collector's day in Chromium, on a laptop (1366x768) and a wide screen (1920x1080).

A collector opens their queue: each task shows the customer's local time, whether they may be called now
(greyed with the reason when not) and how late it is against the service level; nothing key hides behind a
sideways scroll. They record an outcome in one form (the customer's other loan to tick, the promise amount
prefilled) and the next task opens. A team lead filters everyone's queue by collector, finds a customer by
phone digits typed with spaces, and hands tasks to another collector.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from backoffice.roles import COLLECTOR, TEAM_LEAD
from debt_collection.models import CallAttempt, CallTask, CollectionCase
from tests.factories import make_customer, make_installment, make_loan, make_tier, make_user
from tests.test_browser import PASSWORD, browser, shot  # noqa: F401  (the module's Chromium)

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1366, "height": 768}
DESKTOP = {"width": 1920, "height": 1080}
PLACES = (
    ("Asia/Shanghai", "+86138001{n:05d}"),
    ("Europe/London", "+4479000{n:05d}"),
    ("America/Los_Angeles", "+1415555{n:04d}"),
)

MEASURE = """() => {
  const table = document.querySelector('#result_list');
  const box = table.parentElement;
  const root = document.documentElement;
  const right = (sel) => Math.max(0, ...[...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect().right));
  return {table: table.scrollWidth, box: box.clientWidth, page: root.scrollWidth, window: root.clientWidth,
          lastHeader: right('#result_list thead th'), buttons: right('#result_list a.button'),
          actions: right('#changelist-form .actions button, #changelist-form .actions select')};
}"""


def place(daytime: bool, n: int) -> tuple[str, str]:
    """A zone (and a phone of it) where it is now inside (or well outside) the default 08:00-21:00 window."""
    now = timezone.now()
    for zone, phone in PLACES:
        hour = now.astimezone(zoneinfo.ZoneInfo(zone)).hour
        if (9 <= hour < 20) if daytime else (hour < 7 or hour >= 22):
            return zone, phone.format(n=n)
    raise AssertionError("no zone fits")  # pragma: no cover - three zones 8 hours apart always do


def task_for(tier, collector, *, name, daytime, n, amount, hours_ago, other_loan=False):
    zone, phone = place(daytime, n)
    customer = make_customer(name=name, phone=phone, timezone=zone, tier=tier)
    loan = make_loan(customer, ref=f"L-{n}")
    make_installment(loan, amount_due=amount)
    if other_loan:
        second = make_loan(customer, ref=f"L-{n}-B")
        make_installment(second, amount_due=Decimal("300.00"))
    now = timezone.now()
    case = CollectionCase.objects.create(
        loan=loan,
        tier=tier,
        stage="call",
        opened_at=now,
        oldest_due_date=now.date() - dt.timedelta(days=12),
        amount_overdue=amount,
    )
    return CallTask.objects.create(
        case=case,
        assigned_to=collector,
        scheduled_for=now - dt.timedelta(hours=hours_ago),
        created_at=now - dt.timedelta(hours=hours_ago),
        priority=int(amount),
    )


@pytest.fixture
def day_of_work(transactional_db):
    tier = make_tier(code="STD", name="Standard", max_contacts_per_week=20)
    kim = make_user("kim", group=COLLECTOR)
    lee = make_user("lee", group=COLLECTOR)
    lead = make_user("lena", group=TEAM_LEAD)
    tasks = {
        "first": task_for(
            tier,
            kim,
            name="Wang Fang",
            daytime=True,
            n=11,
            amount=Decimal("900.00"),
            hours_ago=6,
            other_loan=True,
        ),
        "second": task_for(
            tier, kim, name="Li Lei", daytime=True, n=12, amount=Decimal("500.00"), hours_ago=1
        ),
        "night": task_for(
            tier, kim, name="Night Owl", daytime=False, n=13, amount=Decimal("400.00"), hours_ago=1
        ),
        "lees": task_for(
            tier, lee, name="Zhao Min", daytime=True, n=14, amount=Decimal("200.00"), hours_ago=1
        ),
    }
    cache.clear()
    return {"kim": kim, "lee": lee, "lead": lead, **tasks}


def log_in(browser, base_url, user, viewport):  # noqa: F811
    context = browser.new_context(locale="en-US", viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    return context, page


def assert_fits(page, viewport):
    m = page.evaluate(MEASURE)
    assert m["table"] <= m["box"] and m["page"] <= m["window"], m
    assert m["lastHeader"] <= viewport["width"] and m["buttons"] <= viewport["width"], m
    assert m["actions"] <= viewport["width"], m


def row_of(page, task):
    return page.locator("#result_list tbody tr", has_text=task.case.loan.ref + "\n").first


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["1366", "1920"])
def test_a_collector_works_the_queue_and_the_next_task_opens(browser, live_server, day_of_work, viewport):  # noqa: F811
    d = day_of_work
    context, page = log_in(browser, live_server.url, d["kim"], viewport)
    try:
        page.goto(f"{live_server.url}/admin/collections/calltask/")
        shot(page, f"call_queue_collector_{viewport['width']}")
        assert_fits(page, viewport)
        headers = page.locator("#result_list thead").inner_text().lower()
        assert all(h in headers for h in ("customer", "call from", "local time", "may call now", "status"))
        assert "collector" not in headers  # a collector's queue is all theirs
        assert page.locator("#result_list tbody tr").count() == 3

        first, night = row_of(page, d["first"]), row_of(page, d["night"])
        assert (
            "overdue by" in first.inner_text() and "overdue by" not in row_of(page, d["second"]).inner_text()
        )
        assert first.locator(".bo-call-ok").count() == 1
        blocked = night.locator(".bo-call-blocked")
        assert "Outside the contact window in" in blocked.inner_text()
        shade = night.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
        plain = first.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
        assert shade != plain  # greyed

        first.locator("a.button").click()
        page.wait_for_url(f"**/calltask/{d['first'].pk}/record/")
        assert page.locator("input[name=promise_amount]").input_value() == "900.00"
        assert "L-11-B" in page.locator("#bo-record-loans").inner_text()
        assert page.locator("#bo-record-history").is_visible()
        shot(page, f"record_outcome_{viewport['width']}")
        page.select_option("select[name=outcome]", "reached")
        page.check("input[name=covers][value='L-11-B']")
        page.locator("#bo-record-form [type=submit]").click()

        page.wait_for_url(f"**/calltask/{d['second'].pk}/record/")
        assert "Outcome recorded." in page.locator(".messagelist").inner_text()
    finally:
        context.close()
    attempt = CallAttempt.objects.get(task=d["first"])
    assert set(attempt.loans.values_list("ref", flat=True)) == {"L-11", "L-11-B"}


@pytest.mark.parametrize("viewport", [LAPTOP, DESKTOP], ids=["1366", "1920"])
def test_a_team_lead_filters_finds_and_reassigns(browser, live_server, day_of_work, viewport):  # noqa: F811
    d = day_of_work
    context, page = log_in(browser, live_server.url, d["lead"], viewport)
    try:
        page.goto(f"{live_server.url}/admin/collections/calltask/")
        assert page.locator("#result_list tbody tr").count() == 4
        assert_fits(page, viewport)
        assert "collector" in page.locator("#result_list thead").inner_text().lower()
        shot(page, f"call_queue_team_lead_{viewport['width']}")

        page.locator("#changelist-filter a", has_text="lee").click()
        page.wait_for_url("**collector=*")
        assert page.locator("#result_list tbody tr").count() == 1

        page.goto(f"{live_server.url}/admin/collections/calltask/")
        digits = str(d["second"].case.loan.customer.phone)[-8:]
        page.fill("#searchbar", f"{digits[:4]} {digits[4:]}")  # typed with a space
        page.press("#searchbar", "Enter")
        page.wait_for_url("**q=*")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 1 and "L-12" in rows.first.inner_text()

        page.goto(f"{live_server.url}/admin/collections/calltask/")
        for key in ("first", "second"):
            row_of(page, d[key]).locator("input.action-select").check()
        page.select_option("select[name=action]", "reassign_action")
        page.locator("#changelist-form .actions button").click()
        page.select_option("#id_collector", label="lee")
        page.locator("#bo-reassign-form [type=submit]").click()
        page.locator(".messagelist").wait_for()
        assert "2 call tasks reassigned to lee." in page.locator(".messagelist").inner_text()
    finally:
        context.close()
    assert set(CallTask.objects.filter(assigned_to=d["lee"]).values_list("pk", flat=True)) == {
        d["first"].pk,
        d["second"].pk,
        d["lees"].pk,
    }
