"""Every figure of the 9 o'clock board links to the filtered list behind it: each count opens the list of exactly
the rows it counts (contacts and their totals, the overdue book and its total, roll and cure rates, what was
collected by stage, each collector's open tasks); amounts and rates open the same list as their count."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache

from debt_collection.models import CallTask, CollectionCase
from notifications.models import NotificationLog
from tests.factories import make_payment, make_user
from tests.factories_operator import local, make_log
from tests.test_dashboard import TODAY, book, days_ago  # noqa: F401  (the book with known answers)

pytestmark = pytest.mark.django_db

S, R = NotificationLog.Status, NotificationLog.Reason
FIGURE = re.compile(r'<td class="num">(.*?)</td>', re.S)
LINK = re.compile(r'^<a href="([^"]+)">(?:<strong>)?([^<]*)(?:</strong>)?</a>$')


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def busy_book(book, settings):  # noqa: F811
    settings.TIME_ZONE = "Asia/Shanghai"
    alice, bob = book["customers"]
    make_log(alice, scheduled_for=local(TODAY, 10), status=S.SENT)
    make_log(alice, scheduled_for=local(TODAY, 11), status=S.SENT, channel="email")
    make_log(bob, scheduled_for=local(TODAY, 12), status=S.SUPPRESSED, reason=R.FREQUENCY_CAP)
    kim = make_user("kim")
    case = CollectionCase.objects.create(
        loan=book["i1"].loan, opened_at=local(days_ago(20)), oldest_due_date=days_ago(25), stage="call"
    )
    make_payment(book["i1"], amount=Decimal("40.00"), received_at=local(days_ago(3)))
    for user, day in ((kim, TODAY), (kim, TODAY + dt.timedelta(days=2)), (None, days_ago(1))):
        CallTask.objects.create(case=case, assigned_to=user, scheduled_for=local(day), created_at=local(day))
    return book


def figures_and_links(html: str) -> list[tuple[str, str | None]]:
    board = html[html.index('id="bo-dashboard"') :]
    cells = []
    for cell in FIGURE.findall(board):
        link = LINK.match(cell.strip())
        if link:
            cells.append((html_lib.unescape(link.group(2)).strip(), html_lib.unescape(link.group(1))))
        else:
            cells.append((cell.strip(), None))
    return cells


def test_every_figure_of_the_board_links_to_the_rows_it_counts(client, busy_book):
    client.force_login(make_user("boss", is_superuser=True))
    with time_machine.travel(local(TODAY, 9), tick=False):
        page = client.get("/admin/").content.decode()
        cells = figures_and_links(page)

        unlinked = [figure for figure, url in cells if url is None]
        counted = {}
        for figure, url in cells:
            if url is not None and figure.isdigit():
                listed = client.get(url)
                assert listed.status_code == 200, url
                counted[url] = (int(figure), listed.context["cl"].result_count)

    assert unlinked == []
    assert len(cells) > 40
    assert {url: pair for url, pair in counted.items() if pair[0] != pair[1]} == {}
    for section in ("bo-collected", "bo-roll-rates", "bo-cure-rates", "bo-collector-tasks", "bo-overdue"):
        assert f'id="{section}"' in page


def test_a_collector_without_every_queue_sees_the_collectors_figures_unlinked(client, busy_book):
    from django.contrib.auth.models import Group

    collector = make_user("lee")
    collector.groups.add(Group.objects.get(name="Collector"))
    client.force_login(collector)
    with time_machine.travel(local(TODAY, 9), tick=False):
        page = client.get("/admin/").content.decode()

    tasks = page[page.index('id="bo-collector-tasks"') :]
    tasks = tasks[: tasks.index("</table>")]
    assert "href=" not in tasks and '<td class="num">2</td>' in tasks
