"""End-to-end: each role does its real work in headless Chromium (Debian's, driven by Playwright).

One browser for the module, a fresh context (cookies) per test, the live server of pytest-django. Screenshots
of the main pages go to var/screenshots/. The browser must be there (scripts/ensure_browser.sh installs it):
a missing one is a failure, never a skip.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from backoffice.roles import COLLECTOR, COMPLIANCE_OFFICER, OPERATIONS
from core.audit import log_event
from debt_collection.models import CallTask, CollectionCase, PromiseToPay
from loans.models import CreditTier, Customer
from notifications.models import NotificationLog, ReminderTemplate
from tests.factories import make_customer, make_installment, make_loan, make_tier, make_user
from tests.factories_operator import make_log

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-for-tests-1!"


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "Chromium is missing: run scripts/ensure_browser.sh"
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the ORM calls of these tests are
    # plain synchronous code all the same. Restored when the module's browser closes.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_as(browser, live_server):
    """``open_as(user, locale="en-US")`` -> a page logged in through the real admin login form."""
    contexts = []

    def login(user, locale="en-US"):
        context = browser.new_context(locale=locale, viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        return page

    yield login
    for context in contexts:
        context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def book(transactional_db):
    tier = make_tier(code="STD", name="Standard")
    customer = make_customer(name="Alice Smith", tier=tier)
    first, second = make_loan(customer, ref="L-FIRST"), make_loan(customer, ref="L-SECOND")
    i1, i2 = make_installment(first), make_installment(second)
    now = timezone.now()
    sent = make_log(
        customer,
        installments=[i1, i2],
        status="sent",
        scheduled_for=now,
        sent_at=now,
        body="Alice Smith, 2 loans due",
    )
    held = make_log(
        customer,
        installments=[i2],
        status=NotificationLog.Status.SUPPRESSED,
        reason=NotificationLog.Reason.FREQUENCY_CAP,
        scheduled_for=now,
        body="Alice Smith, L-SECOND is due",
    )
    log_event(
        "notifications.contact.suppressed",
        actor="job:dispatch_due",
        object_type="notifications.NotificationLog",
        object_id=str(held.pk),
        after={"reason": "frequency_cap", "cap": 3},
    )
    cache.clear()  # the dashboard of an earlier test's log-in is cached for a minute
    return {"tier": tier, "customer": customer, "loans": (first, second), "sent": sent, "held": held}


def test_an_operator_sees_the_error_of_a_bad_placeholder(open_as, live_server, transactional_db):
    page = open_as(make_user("olivia", group=OPERATIONS))

    page.goto(f"{live_server.url}/admin/notifications/remindertemplate/add/")
    page.select_option("#id_kind", "pre_due")
    page.select_option("#id_channel", "sms")
    page.select_option("#id_language", "en")
    page.fill("#id_body", "Dear {custmer_name}, {amount_due} is due on {due_date}.")
    page.click("input[name=_save]")

    error = page.locator(".errorlist").first
    error.wait_for()
    assert "{custmer_name}" in error.inner_text()
    shot(page, "template_bad_placeholder")
    assert ReminderTemplate.objects.count() == 0


def test_an_operator_previews_an_import_before_it_is_saved(open_as, live_server, transactional_db, tmp_path):
    csv = tmp_path / "tiers.csv"
    csv.write_text(
        "code,name,min_score,max_score,risk_level,grace_period_days,max_contacts_per_week,channel_order\n"
        'LOW,Low risk,700,850,low,7,2,"sms,push,email"\n'
        'HIGH,High risk,300,699,high,3,4,"sms,email"\n',
        encoding="utf-8",
    )
    page = open_as(make_user("oscar", group=OPERATIONS))

    page.goto(f"{live_server.url}/admin/loans/credittier/import/")
    page.set_input_files("input[type=file]", str(csv))
    if page.locator("select[name=format]").count():
        page.select_option("select[name=format]", label="csv")
    page.locator("form input[type=submit], form button[type=submit]").last.click()

    confirm = page.locator(
        "input[name=confirm], button[name=confirm], form[action*='process_import'] [type=submit]"
    ).first
    confirm.wait_for()
    preview = page.locator("table.import-preview, #content-main table").first.inner_text()
    assert "LOW" in preview and "HIGH" in preview
    shot(page, "import_dry_run")
    assert CreditTier.objects.count() == 0  # the preview saved nothing

    confirm.click()
    page.wait_for_url(f"{live_server.url}/admin/loans/credittier/**")
    assert set(CreditTier.objects.values_list("code", flat=True)) == {"LOW", "HIGH"}


def test_an_operator_opens_the_dashboard_and_a_customer_timeline(open_as, live_server, book):
    page = open_as(make_user("omar", group=OPERATIONS))

    assert page.locator("#bo-dashboard svg").count() >= 3
    assert page.locator("#bo-held-back").inner_text().count("Weekly contact cap reached") == 1
    shot(page, "dashboard")

    page.goto(f"{live_server.url}/admin/loans/customer/{book['customer'].pk}/timeline/")
    held_row = page.locator(f"#contact-{book['held'].pk}")
    assert "Weekly contact cap reached" in held_row.inner_text()
    assert "L-SECOND" in held_row.inner_text()
    assert "L-FIRST, L-SECOND" in page.locator(f"#contact-{book['sent'].pk}").inner_text()
    assert (
        "Held back by job:dispatch_due: weekly contact cap reached"
        in page.locator("#bo-timeline").inner_text()
    )
    shot(page, "timeline")

    page.goto(f"{live_server.url}/admin/loans/customer/")
    shot(page, "customers")

    page.goto(f"{live_server.url}/admin/loans/credittier/{book['tier'].pk}/preview/")
    page.fill("#id_max_contacts_per_week", "5")
    page.click("#bo-preview-form input[type=submit]")
    page.locator("#bo-preview-result").wait_for()
    shot(page, "policy_preview")


def test_the_dashboard_speaks_chinese_to_a_chinese_browser(open_as, live_server, book):
    page = open_as(make_user("wang", group=OPERATIONS), locale="zh-CN")

    assert "已达每周联系上限" in page.locator("#bo-held-back").inner_text()
    shot(page, "dashboard_zh")


def test_a_compliance_officer_reads_and_exports_the_log_but_cannot_change_it(
    open_as, live_server, book, settings, tmp_path
):
    settings.EXPORT_ROOT = tmp_path
    page = open_as(make_user("carla", group=COMPLIANCE_OFFICER))

    page.goto(f"{live_server.url}/admin/notifications/notificationlog/")
    assert page.locator("#result_list tbody tr").count() == 2
    assert "Alice Smith" not in page.content()  # masked for compliance
    shot(page, "notification_log")

    with page.expect_download() as download:
        page.locator("#bo-export-form button[type=submit]").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert "frequency_cap" in exported and "Alice Smith" not in exported

    change_url = f"{live_server.url}/admin/notifications/notificationlog/{book['held'].pk}/change/"
    page.goto(change_url)
    assert page.locator("input[name=_save]").count() == 0
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.context.request.post(
        change_url, form={"csrfmiddlewaretoken": token, "status": "sent"}, headers={"Referer": change_url}
    )
    assert response.status == 403
    book["held"].refresh_from_db()
    assert book["held"].status == NotificationLog.Status.SUPPRESSED


def test_a_collector_records_a_promise_to_pay(open_as, live_server, book):
    collector = make_user("kim", group=COLLECTOR)
    now = timezone.now()
    # A call is checked when it is made: the customer lives (and has a phone) where it is daytime now.
    zone, phone = next(
        (z, p)
        for z, p in (
            ("Asia/Shanghai", "+8613800138000"),
            ("Europe/London", "+447900000001"),
            ("America/Los_Angeles", "+14155550101"),
        )
        if 9 <= now.astimezone(zoneinfo.ZoneInfo(z)).hour < 20
    )
    Customer.objects.filter(pk=book["loans"][1].customer_id).update(timezone=zone, phone=phone)
    case = CollectionCase.objects.create(
        loan=book["loans"][1],
        tier=book["tier"],
        stage="call",
        opened_at=now,
        oldest_due_date=now.date() - dt.timedelta(days=12),
        amount_overdue=Decimal("500.00"),
    )
    task = CallTask.objects.create(
        case=case, assigned_to=collector, scheduled_for=now, created_at=now, priority=10
    )
    page = open_as(collector)

    page.goto(f"{live_server.url}/admin/collections/calltask/")
    shot(page, "call_queue")
    page.click(f"a[href$='/admin/collections/calltask/{task.pk}/record/']")
    page.select_option("select[name=outcome]", "promise_to_pay")
    page.fill("input[name=promise_amount]", "500.00")
    page.fill("input[name=promise_date]", (timezone.localdate() + dt.timedelta(days=3)).isoformat())
    page.locator("#content-main form [type=submit]").click()

    page.locator(".messagelist").wait_for()
    assert "Outcome recorded." in page.locator(".messagelist").inner_text()
    promise = PromiseToPay.objects.get(case=case)
    assert promise.amount == Decimal("500.00")
    task.refresh_from_db()
    assert task.outcome == CallTask.Outcome.PROMISE_TO_PAY


def test_the_content_security_policy_lets_the_admin_scripts_run_and_blocks_nothing_of_ours(
    open_as, live_server, book
):
    """The policy (django-csp) is strict on scripts: every page an operator uses still runs its scripts, the
    import progress poll (inline, with the request's nonce) fetches its status, and no page reports a violation."""
    from core.models import ImportJob

    user = make_user("olga", group=OPERATIONS)
    running = ImportJob.objects.create(
        user=user,
        resource="loans.resources.CreditTierResource",
        file_name="tiers.csv",
        file_path="none.csv",
        file_sha256="0" * 64,
        format="import_export.formats.base_formats.CSV",
        status=ImportJob.Status.RUNNING,
        rows_total=10,
    )
    page = open_as(user)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    customer = book["customer"]
    for path in (
        "/admin/",
        "/admin/loans/customer/",
        f"/admin/loans/customer/{customer.pk}/change/",
        f"/admin/loans/customer/{customer.pk}/timeline/",
        "/admin/notifications/notificationlog/",
        "/admin/notifications/outboxmessage/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"]

    with page.expect_request(f"**/admin/imports/{running.pk}/status/"):
        page.goto(f"{live_server.url}/admin/imports/{running.pk}/")

    # The export page's "select all" box (django-import-export's inline handler, allowed by its hash).
    page.goto(f"{live_server.url}/admin/loans/customer/export/")
    toggle = page.locator("input.select-toggle").first
    boxes = page.locator(".selectable-field-export-row input[type=checkbox]")
    assert boxes.count() > 3 and boxes.first.is_checked()
    toggle.uncheck()
    assert not any(boxes.nth(i).is_checked() for i in range(boxes.count()))
    assert violations == []
