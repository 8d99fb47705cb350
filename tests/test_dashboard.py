import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backoffice.charts import Series, bar_chart, line_chart
from backoffice.dashboard import dashboard_figures
from loans.models import Loan
from notifications.models import NotificationLog
from tests.factories import make_customer, make_installment, make_loan, make_payment, make_tier, make_user
from tests.factories_operator import local, make_log

TODAY = dt.date(2026, 6, 15)
S = NotificationLog.Status
R = NotificationLog.Reason


def days_ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def book(db):
    """A small book with known answers (see each instalment's comment)."""
    tier_a = make_tier(code="A", name="Low risk")
    tier_b = make_tier(code="B", name="High risk")
    alice = make_customer(tier=tier_a)
    bob = make_customer(tier=tier_b)
    loan_a = make_loan(alice)
    loan_b = make_loan(bob)
    written_off = make_loan(alice, status=Loan.Status.WRITTEN_OFF)

    def paid(day, amount):
        return {"paid_at": local(day), "amount_paid": Decimal(amount)}

    return {
        "tiers": (tier_a, tier_b),
        "customers": (alice, bob),
        "i1": make_installment(loan_a, due_date=days_ago(5), amount_due=Decimal("100")),  # DPD 5
        "i2": make_installment(
            loan_a, due_date=days_ago(45), amount_due=Decimal("200"), amount_paid=Decimal("50")
        ),
        "i3": make_installment(loan_a, due_date=days_ago(75), amount_due=Decimal("300")),  # DPD 75
        "i4": make_installment(loan_a, due_date=days_ago(120), amount_due=Decimal("400")),  # DPD 120
        "i8": make_installment(
            loan_a, due_date=days_ago(40), amount_due=Decimal("80"), **paid(days_ago(35), "80")
        ),
        "i7": make_installment(written_off, due_date=days_ago(5), amount_due=Decimal("999")),  # never counted
        "i5": make_installment(
            loan_b, due_date=days_ago(10), amount_due=Decimal("50"), **paid(days_ago(8), "50")
        ),
        "i9": make_installment(
            loan_b, due_date=days_ago(50), amount_due=Decimal("60"), **paid(days_ago(20), "60")
        ),
        "i10": make_installment(
            loan_b, due_date=days_ago(20), amount_due=Decimal("70"), **paid(days_ago(21), "70")
        ),
        "i6": make_installment(loan_b, due_date=TODAY + dt.timedelta(days=3), amount_due=Decimal("90")),
    }


def test_it_buckets_the_overdue_book_by_days_past_due(book):
    overdue = {row["bucket"]: row for row in dashboard_figures(TODAY)["overdue"]}

    assert {k: v["count"] for k, v in overdue.items()} == {"1-30": 1, "31-60": 1, "61-90": 1, "90+": 1}
    assert overdue["1-30"]["amount"] == Decimal("100.00")
    assert overdue["31-60"]["amount"] == Decimal("150.00")  # 200 due, 50 already paid
    assert overdue["61-90"]["amount"] == Decimal("300.00")
    assert overdue["90+"]["amount"] == Decimal("400.00")


def test_roll_rates_compare_each_bucket_thirty_days_ago_with_today(book):
    rows = {r["from_bucket"]: r for r in dashboard_figures(TODAY)["roll_rates"]}

    # current 30 days ago: i1 (still unpaid), i5 and i10 (paid after the snapshot); i8 was paid before it.
    assert (rows["current"]["base"], rows["current"]["rolled"]) == (3, 1)
    assert rows["current"]["rate"] == Decimal("0.3333")
    assert rows["current"]["to_bucket"] == "1-30"
    # 1-30 then: i2 (unpaid) and i9 (paid since); i8 had been paid before the snapshot.
    assert (rows["1-30"]["base"], rows["1-30"]["rolled"]) == (2, 1)
    assert rows["1-30"]["rate"] == Decimal("0.5000")
    assert (rows["31-60"]["base"], rows["31-60"]["rolled"], rows["31-60"]["rate"]) == (1, 1, Decimal("1"))
    assert (rows["61-90"]["base"], rows["61-90"]["rolled"]) == (1, 1)


def test_cure_rate_counts_overdue_instalments_paid_since_by_tier(book):
    rows = {r["tier_code"]: r for r in dashboard_figures(TODAY)["cure_rates"]}

    # A: i1, i2, i3 unpaid, i8 paid late (i4 is older than 90 days); B: i5 and i9 paid late, i10 paid early.
    assert (rows["A"]["overdue"], rows["A"]["cured"], rows["A"]["rate"]) == (4, 1, Decimal("0.2500"))
    assert (rows["B"]["overdue"], rows["B"]["cured"], rows["B"]["rate"]) == (2, 2, Decimal("1.0000"))


def test_todays_contacts_count_by_local_day_status_and_channel(book):
    alice, bob = book["customers"]
    make_log(alice, scheduled_for=local(TODAY, 10), status=S.SENT)
    make_log(alice, channel="email", scheduled_for=local(TODAY, 11), status=S.DELIVERED)
    make_log(bob, scheduled_for=local(TODAY, 12), status=S.SUPPRESSED, reason=R.FREQUENCY_CAP)
    make_log(bob, scheduled_for=local(TODAY, 22), status=S.DEFERRED, reason=R.OUTSIDE_CONTACT_WINDOW)
    make_log(bob, channel="push", scheduled_for=local(TODAY, 9), status=S.CANCELLED, reason=R.PAID)
    make_log(alice, scheduled_for=local(TODAY, 0, 30), status=S.PLANNED)  # 16:30 UTC the day before
    make_log(alice, scheduled_for=local(days_ago(1), 23, 59), status=S.SENT)  # yesterday
    make_payment(book["i1"], amount=Decimal("40"), received_at=local(TODAY, 9))

    figures = dashboard_figures(TODAY)

    assert figures["contacts"]["matrix"] == {
        ("sent", "sms"): 1,
        ("delivered", "email"): 1,
        ("suppressed", "sms"): 1,
        ("deferred", "sms"): 1,
        ("cancelled", "push"): 1,
        ("planned", "sms"): 1,
    }
    assert sorted(figures["contacts"]["held_back"]) == [
        ("cancelled", "paid", 1),
        ("deferred", "outside_contact_window", 1),
        ("suppressed", "frequency_cap", 1),
    ]
    history = figures["history"]
    assert len(history) == 14 and history[-1]["day"] == TODAY and history[0]["day"] == days_ago(13)
    assert (history[-1]["contacted"], history[-1]["held_back"], history[-1]["pending"]) == (2, 3, 1)
    assert history[-2]["contacted"] == 1
    assert history[-1]["payments"] == 1 and history[-1]["paid_amount"] == Decimal("40.00")


def test_figures_are_cached_for_a_minute(book, django_assert_num_queries):
    dashboard_figures(TODAY)
    make_installment(book["i1"].loan, due_date=days_ago(3), amount_due=Decimal("1"))

    with django_assert_num_queries(0):
        again = dashboard_figures(TODAY)

    assert again["overdue"][0]["count"] == 1


def test_the_front_page_shows_the_dashboard_in_a_pinned_number_of_queries(book, client):
    alice, _bob = book["customers"]
    make_log(alice, scheduled_for=local(TODAY, 12), status=S.SUPPRESSED, reason=R.FREQUENCY_CAP)
    client.force_login(make_user("boss", is_superuser=True))
    cache.clear()

    with CaptureQueriesContext(connection) as cold:
        response = client.get("/admin/")
    with CaptureQueriesContext(connection) as warm:
        client.get("/admin/")
    for n in range(5):  # a bigger book costs no more queries
        make_installment(book["i1"].loan, due_date=days_ago(n + 1), amount_due=Decimal("10"))
    cache.clear()
    with CaptureQueriesContext(connection) as bigger:
        client.get("/admin/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="bo-dashboard"' in html
    assert "<svg" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Overdue book by days past due" in html
    assert "app-auth" in html  # the app list stays on the page
    # What the dashboard itself costs on a cold cache (the rest of the page is the admin's own).
    assert len(cold) - len(warm) == DASHBOARD_QUERIES
    assert len(bigger) == len(cold)


# contacts by status/channel, held back, 14 days of contacts, of payments, DPD buckets, roll rates, cure rates,
# and once collections is migrated the collectors' open tasks and the morning board (promises, auto-debit
# failures, the call queue by age, completed calls, amount collected by stage)
DASHBOARD_QUERIES = 13


def test_charts_escape_labels_and_scale_to_the_largest_value():
    svg = bar_chart("<b>x</b>", ["a&b", "c"], [Series("s1", [1, 3]), Series("s2", [2, 0])])
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert "a&amp;b" in svg
    assert svg.count("<rect") == 3 + 2  # three non-empty segments, two legend swatches
    line = line_chart("t", ["d1", "d2", "d3"], [Series("paid", [Decimal("0"), Decimal("5"), Decimal("2.5")])])
    assert line.count("<circle") == 3 and "<polyline" in line


def test_collectors_open_tasks_count_per_collector(book):
    from debt_collection.models import CallTask, CollectionCase

    kim, lee = make_user("kim"), make_user("lee")
    case = CollectionCase.objects.create(
        loan=book["i1"].loan, opened_at=local(days_ago(2)), oldest_due_date=days_ago(5)
    )
    noon = local(TODAY)

    def task(user, at, status=CallTask.Status.OPEN, outcome=""):
        CallTask.objects.create(
            case=case, assigned_to=user, scheduled_for=at, created_at=noon, status=status, outcome=outcome
        )

    task(kim, noon)
    task(kim, local(TODAY + dt.timedelta(days=1)))  # not callable before tomorrow
    task(kim, noon, status=CallTask.Status.DONE, outcome=CallTask.Outcome.NO_ANSWER)
    task(lee, local(days_ago(1)))
    task(None, noon)

    rows = {r["collector"]: r for r in dashboard_figures(TODAY)["collector_tasks"]}

    assert {k: (v["open"], v["due_now"]) for k, v in rows.items()} == {
        "kim": (2, 1),
        "lee": (1, 1),
        "": (1, 1),
    }


def test_the_morning_board_counts_promises_failures_and_the_queue_by_age_with_links(book, client):
    from debt_collection.models import CallTask, CollectionCase, PromiseToPay
    from loans.models import AutoDebitAttempt

    case = CollectionCase.objects.create(
        loan=book["i1"].loan, opened_at=local(days_ago(20)), oldest_due_date=days_ago(25), stage="call"
    )
    noon = local(TODAY)
    make_payment(
        book["i1"], amount=Decimal("40.00"), received_at=local(days_ago(3))
    )  # while the case is open
    make_payment(book["i1"], amount=Decimal("7.00"), received_at=local(days_ago(25)))  # before it opened

    def promise(date, status, resolved=None, amount="100.00"):
        loan = make_loan(book["customers"][0])  # one pending promise per case
        PromiseToPay.objects.create(
            case=CollectionCase.objects.create(
                loan=loan, opened_at=local(days_ago(20)), oldest_due_date=days_ago(25)
            ),
            amount=Decimal(amount),
            promised_date=date,
            status=status,
            created_at=noon,
            resolved_at=resolved,
        )

    promise(TODAY, PromiseToPay.Status.PENDING, amount="250.00")
    promise(TODAY, PromiseToPay.Status.PENDING, amount="50.00")
    promise(days_ago(2), PromiseToPay.Status.BROKEN, resolved=local(days_ago(1), 1))  # broken yesterday
    promise(days_ago(5), PromiseToPay.Status.BROKEN, resolved=local(days_ago(4), 1))
    promise(days_ago(6), PromiseToPay.Status.KEPT, resolved=local(days_ago(6), 9))
    promise(days_ago(8), PromiseToPay.Status.KEPT, resolved=local(days_ago(8), 9))
    promise(days_ago(40), PromiseToPay.Status.KEPT, resolved=local(days_ago(40), 9))  # outside 30 days
    for on, status in (
        (days_ago(1), "failed"),
        (days_ago(1), "failed"),
        (TODAY, "failed"),
        (TODAY, "succeeded"),
    ):
        AutoDebitAttempt.objects.create(
            installment=make_installment(book["i1"].loan),
            attempted_on=on,
            amount=Decimal("10"),
            status=status,
        )

    def task(at, status=CallTask.Status.OPEN, outcome="", completed=None):
        CallTask.objects.create(
            case=case, scheduled_for=at, created_at=at, status=status, outcome=outcome, completed_at=completed
        )

    task(local(TODAY + dt.timedelta(days=1)))  # later
    task(local(TODAY, 9))  # today
    task(local(days_ago(2), 9))  # 1-2 days
    task(local(days_ago(3), 9))  # 3-7 days
    task(local(days_ago(10), 9))  # over 7 days
    for outcome in ("reached", "promise_to_pay", "no_answer", "wrong_number"):
        task(local(days_ago(3)), CallTask.Status.DONE, outcome, completed=local(days_ago(2)))

    morning = dashboard_figures(TODAY)["morning"]

    assert morning["promises"]["due_today"] == 2 and morning["promises"]["due_today_amount"] == Decimal(
        "300.00"
    )
    assert morning["promises"]["broken_yesterday"] == 1
    assert morning["promise_kept_rate"] == Decimal("0.5000")  # 2 kept of 4 resolved in 30 days
    assert morning["autodebit"] == {"failed_yesterday": 2, "failed_today": 1}
    assert {k: morning["queue"][k] for k in ("total", "later", "today", "1-2", "3-7", "8+")} == {
        "total": 5,
        "later": 1,
        "today": 1,
        "1-2": 1,
        "3-7": 1,
        "8+": 1,
    }
    assert morning["right_party_rate"] == Decimal("0.5000")  # 2 conversations of 4 completed calls
    assert morning["collected_by_stage"] == [{"stage": "call", "payments": 1, "amount": Decimal("40.00")}]

    client.force_login(make_user("boss", is_superuser=True))
    with time_machine.travel(local(TODAY, 9), tick=False):
        cache.clear()
        html = client.get("/admin/").content.decode()
    assert 'data-figure="promises_due_today"' in html
    assert "/admin/collections/promisetopay/?status__exact=pending&amp;promised_date=2026-06-15" in html
    assert "/admin/loans/autodebitattempt/?status__exact=failed&amp;attempted_on=2026-06-14" in html
    over_a_week = "/admin/collections/calltask/?status__exact=open&amp;scheduled_for__lt=2026-06-08T00%3A00%3A00%2B08%3A00"
    assert over_a_week in html
    # The link leads to the very tasks counted.
    listed = client.get(over_a_week.replace("&amp;", "&"))
    assert listed.status_code == 200 and len(listed.context["cl"].result_list) == 1


def test_todays_contacts_held_back_and_overdue_figures_link_to_the_rows_they_count(book, client, settings):
    import re

    settings.TIME_ZONE = "Asia/Shanghai"
    alice, bob = book["customers"]
    make_log(alice, scheduled_for=local(TODAY, 10), status=S.SENT)
    make_log(bob, scheduled_for=local(TODAY, 12), status=S.SUPPRESSED, reason=R.FREQUENCY_CAP)
    make_log(bob, scheduled_for=local(TODAY, 13), status=S.SUPPRESSED, reason=R.FREQUENCY_CAP)
    make_log(
        bob, scheduled_for=local(days_ago(1), 13), status=S.SUPPRESSED, reason=R.FREQUENCY_CAP
    )  # yesterday
    client.force_login(make_user("boss", is_superuser=True))

    with time_machine.travel(local(TODAY, 9), tick=False):
        cache.clear()
        html = client.get("/admin/").content.decode()
        overdue = {row["bucket"]: row for row in dashboard_figures(TODAY)["overdue"]}

    held = re.search(r'data-reason="frequency_cap">.*?href="([^"]+)">(\d+)</a>', html)
    assert held and held.group(2) == "2"
    listed = client.get(held.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200 and len(listed.context["cl"].result_list) == 2
    bucket = re.search(r'data-bucket="1-30"><th>1-30</th><td class="num"><a href="([^"]+)">(\d+)</a>', html)
    assert bucket and int(bucket.group(2)) == overdue["1-30"]["count"]
    listed = client.get(bucket.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200 and listed.context["cl"].result_count == overdue["1-30"]["count"]
