"""The background imports are reachable from the admin index and from every import page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from .factories import make_user

pytestmark = pytest.mark.django_db


def test_the_admin_index_links_to_the_background_imports(client):
    client.force_login(make_user("boss", is_superuser=True))

    page = client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse("imports:list")}"' in page


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:loans_customer_import",
        "admin:loans_credittier_import",
        "admin:notifications_remindertemplate_import",
        "admin:collections_escalationstep_import",
    ],
)
def test_each_import_page_links_to_the_background_imports(client, url_name):
    client.force_login(make_user("boss", is_superuser=True))

    response = client.get(reverse(url_name))

    assert response.status_code == 200
    assert f'href="{reverse("imports:list")}"' in response.content.decode()
