"""The screens added since the first catalogue read in Chinese too: the app headings, the background imports and
the instalments' state."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from loans.schedule import local_date

from .factories import make_customer, make_installment, make_loan, make_tier, make_user

pytestmark = pytest.mark.django_db

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-hans,zh;q=0.9,en;q=0.5"}


@pytest.fixture
def boss(client):
    client.force_login(make_user("boss", is_superuser=True))
    return client


def test_the_admin_index_names_the_back_office_and_background_jobs_sections_in_chinese(boss):
    html = boss.get(reverse("admin:index"), **CHINESE).content.decode()

    assert "后台管理" in html and "后台任务" in html and "后台导入" in html
    assert ">Back office<" not in html and "Background jobs" not in html and "Background imports" not in html


def test_the_background_imports_page_and_the_import_form_read_in_chinese(boss):
    listing = boss.get(reverse("imports:list"), **CHINESE).content.decode()
    form = boss.get(reverse("admin:loans_customer_import"), **CHINESE).content.decode()

    assert "暂无后台导入" in listing and "No background import yet" not in listing
    assert "行数较多的文件会在后台读取" in form and "is read in the background" not in form


def test_an_instalment_state_reads_in_chinese(boss):
    customer = make_customer(tier=make_tier(grace_period_days=3))
    today = local_date(timezone.now(), customer.timezone)
    make_installment(make_loan(customer), due_date=today - dt.timedelta(days=1))

    html = boss.get(reverse("admin:loans_installment_changelist"), **CHINESE).content.decode()

    assert "宽限期内" in html and "In grace period" not in html
