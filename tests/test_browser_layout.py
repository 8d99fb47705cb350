"""On a laptop screen, every admin list page keeps its columns and actions in view, for every role.

The demo book (``seed_demo``'s data, its four users) after one pipeline run, plus a row in the lists the run
leaves empty. Each role opens every list page it is offered at 1366x768 (the Administrator also at 1920x1080):
the results table never scrolls sideways, nor does the page, and the last column is inside the window. The
admin carries the product's name in both languages and offers no "View site" that would lead to a 404.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django_q.models import Failure, Success

from backoffice import demo
from backoffice.jobs import run_pipeline
from backoffice.roles import OPERATIONS
from core.models import ExportJob, MonthArchive
from debt_collection.models import CallTask, PromiseToPay
from tests.factories import make_user
from tests.test_browser import browser  # noqa: F401  (the module's Chromium)

pytestmark = pytest.mark.browser

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
TODAY = dt.date(2026, 11, 30)
DEMO_USERS = {
    "operations": "demo-operations-2026",
    "collector": "demo-collector-2026",
    "compliance": "demo-compliance-2026",
    "admin": "demo-admin-2026",
}
LAPTOP = {"width": 1366, "height": 768}
DESKTOP = {"width": 1920, "height": 1080}

# Measured in the page: the results table against its scrolling box, the page against the window, and where
# the last column header ends.
MEASURE = """() => {
  const table = document.querySelector('#result_list');
  const box = table ? table.parentElement : null;
  const heads = table ? table.querySelectorAll('thead th') : [];
  const last = heads.length ? heads[heads.length - 1].getBoundingClientRect().right : 0;
  const root = document.documentElement;
  return {
    rows: table ? table.querySelectorAll('tbody tr').length : 0,
    table: table ? table.scrollWidth : 0, box: box ? box.clientWidth : 0,
    page: root.scrollWidth, window: root.clientWidth, lastColumnRight: last,
  };
}"""


@pytest.fixture
def demo_book(transactional_db):
    demo.seed(today=TODAY)
    run_pipeline(dt.datetime.combine(TODAY, dt.time(10, 0), tzinfo=SHANGHAI))
    case = CallTask.objects.select_related("case").first().case
    collector = get_user_model().objects.get(username="collector")
    PromiseToPay.objects.create(
        case=case,
        amount=Decimal("1200.00"),
        promised_date=TODAY + dt.timedelta(days=3),
        created_at=dt.datetime.combine(TODAY, dt.time(11, 0), tzinfo=SHANGHAI),
        created_by=collector,
    )
    ExportJob.objects.create(
        user=get_user_model().objects.get(username="compliance"),
        kind=ExportJob.Kind.AUDIT,
        format=ExportJob.Format.CSV,
        status=ExportJob.Status.DONE,
        rows_done=1277,
        file_path="2026-11/audit-1.csv",
    )
    MonthArchive.objects.create(
        kind=MonthArchive.Kind.AUDIT,
        month=dt.date(2026, 6, 1),
        file_path="archives/audit-2026-06.jsonl",
        file_sha256="a" * 64,
        manifest_sha256="b" * 64,
        rows=1_234_567,
        first_seq=1,
        last_seq=1_234_567,
        first_hash="c" * 64,
        last_hash="d" * 64,
        archived_at=dt.datetime.combine(TODAY, dt.time(3, 0), tzinfo=SHANGHAI),
        archived_by="operations",
    )
    started = dt.datetime.combine(TODAY, dt.time(2, 0), tzinfo=SHANGHAI)
    for model, success in ((Success, True), (Failure, False)):
        model.objects.create(
            id=f"task-{success}",
            name="daily-pipeline-example-name-that-is-long",
            func="backoffice.tasks.run_daily_pipeline",
            started=started,
            stopped=started + dt.timedelta(minutes=3),
            success=success,
            result="ok" if success else "Traceback: something failed",
            group="daily-pipeline",
        )
    cache.clear()


def log_in(browser, base_url, username, viewport, locale="en-US"):  # noqa: F811
    context = browser.new_context(locale=locale, viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_USERS[username])
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    return context, page


def list_pages(page) -> list[str]:
    """The model list pages the dashboard offers this user (each app's model links)."""
    hrefs = page.eval_on_selector_all(
        "#content-main .bo-app-list th[scope=row] a", "els => els.map(e => e.getAttribute('href'))"
    )
    return sorted({h for h in hrefs if h and h.count("/") == 4 and h.endswith("/")})


def overflowing_pages(page, base_url, viewport) -> tuple[dict, int]:
    problems, tables = {}, 0
    for href in list_pages(page):
        page.goto(f"{base_url}{href}")
        m = page.evaluate(MEASURE)
        if m["table"]:
            tables += 1
        if m["table"] > m["box"] or m["page"] > m["window"] or m["lastColumnRight"] > viewport["width"]:
            problems[href] = m
    return problems, tables


def test_it_keeps_every_list_page_and_the_call_queues_action_inside_the_screen_for_every_role(
    browser,  # noqa: F811
    live_server,
    demo_book,
):
    problems, tables = {}, {}
    for username in DEMO_USERS:
        context, page = log_in(browser, live_server.url, username, LAPTOP)
        try:
            problems[username], tables[username] = overflowing_pages(page, live_server.url, LAPTOP)
        finally:
            context.close()
    context, page = log_in(browser, live_server.url, "admin", DESKTOP)
    try:
        problems["admin, wide screen"], tables["admin, wide screen"] = overflowing_pages(
            page, live_server.url, DESKTOP
        )
    finally:
        context.close()
    context, page = log_in(browser, live_server.url, "collector", LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/collections/calltask/")
        box = page.locator("#result_list a[href$='/record/']").first.bounding_box()
        headers = page.locator("#result_list thead").inner_text().lower()
    finally:
        context.close()

    assert min(tables.values()) >= 8 and tables["admin"] >= 20
    assert problems == {username: {} for username in tables}
    # The collector's key action and columns are in view on the laptop without scrolling sideways.
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= LAPTOP["width"]
    assert "call from" in headers and "status" in headers


@pytest.mark.parametrize(("locale", "name"), [("en-US", "Repayments & Collections"), ("zh-CN", "还款与催收")])
def test_it_is_branded_as_the_product_and_offers_no_dead_view_site_link(
    browser,  # noqa: F811
    live_server,
    transactional_db,
    locale,
    name,
):
    make_user("operations", group=OPERATIONS, password=DEMO_USERS["operations"])
    context, page = log_in(browser, live_server.url, "operations", LAPTOP, locale=locale)
    try:
        header, title = page.locator("#site-name").inner_text(), page.title()
        view_site = page.locator("#user-tools a", has_text="View site").count()
        page.goto(f"{live_server.url}/")
        landed = page.url
    finally:
        context.close()

    assert header == name and name in title
    assert "Django" not in header + title
    assert view_site == 0
    assert landed == f"{live_server.url}/admin/"


def test_the_policy_preview_runs_and_fits_a_laptop_screen(browser, live_server, demo_book):  # noqa: F811
    from loans.models import CreditTier
    from notifications.models import NotificationLog

    tier = CreditTier.objects.order_by("min_score").first()
    logs = NotificationLog.objects.count()
    context, page = log_in(browser, live_server.url, "operations", LAPTOP)
    try:
        page.goto(f"{live_server.url}/admin/loans/credittier/{tier.pk}/preview/")
        page.fill("#id_start", TODAY.isoformat())
        page.fill("#id_end", (TODAY + dt.timedelta(days=13)).isoformat())
        page.fill("#id_sample_size", "10")
        page.fill("#id_grace_period_days", str(min(tier.grace_period_days + 4, 14)))
        page.click("#bo-preview-form input[type=submit]", no_wait_after=True)
        page.locator("#bo-preview-result").wait_for(timeout=180_000)
        page.locator("details.module summary").click()  # the per-day table opened
        sizes = page.evaluate(
            """() => ({page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth,
                 tables: [...document.querySelectorAll('#content-main table')].map(t => t.getBoundingClientRect().right)})"""
        )
    finally:
        context.close()

    assert sizes["page"] <= sizes["window"]
    assert sizes["tables"] and max(sizes["tables"]) <= LAPTOP["width"]
    assert NotificationLog.objects.count() == logs  # nothing kept
