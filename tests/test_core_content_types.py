"""The shared models moved from ``backoffice`` to ``core``: their content types follow them (``core.0002``), so
permissions granted on them before the move are still granted after it."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from backoffice import roles
from tests.factories import make_user

pytestmark = pytest.mark.django_db

migration = importlib.import_module("core.migrations.0002_content_types_from_backoffice")
MOVED = migration.MODELS


def run_migration():
    migration.move_content_types(apps, SimpleNamespace(connection=connection))
    ContentType.objects.clear_cache()


def as_before_the_move():
    """The content types as a database migrated before the move has them: under ``backoffice``."""
    ContentType.objects.filter(app_label="core", model__in=MOVED).update(app_label="backoffice")
    ContentType.objects.clear_cache()


def perm(app_label: str, codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def fresh(user):
    return get_user_model().objects.get(pk=user.pk)  # no cached permissions


def test_it_renames_the_content_types_in_place_keeping_every_grant():
    as_before_the_move()
    ids = dict(ContentType.objects.filter(app_label="backoffice", model__in=MOVED).values_list("model", "pk"))
    user = make_user("auditor")
    user.user_permissions.add(perm("backoffice", "access_all_exports"))
    group = Group.objects.create(name="Auditors")
    group.permissions.add(perm("backoffice", "export_auditevent"))

    run_migration()

    assert (
        dict(ContentType.objects.filter(app_label="core", model__in=MOVED).values_list("model", "pk")) == ids
    )
    assert not ContentType.objects.filter(app_label="backoffice", model__in=MOVED).exists()
    assert fresh(user).has_perm("core.access_all_exports")
    assert group.permissions.filter(content_type__app_label="core", codename="export_auditevent").exists()


def test_it_merges_into_content_types_made_by_a_migrate_that_stopped_half_way():
    as_before_the_move()
    user = make_user("auditor", group=roles.COMPLIANCE_OFFICER)
    user.user_permissions.add(perm("backoffice", "access_all_exports"))
    # A migrate that stopped after core.0001: post_migrate made core's own rows beside the old ones.
    create_permissions(apps.get_app_config("core"), verbosity=0)
    assert ContentType.objects.filter(app_label="core", model__in=MOVED).count() == len(MOVED)

    run_migration()

    assert not ContentType.objects.filter(app_label="backoffice", model__in=MOVED).exists()
    assert ContentType.objects.filter(app_label="core", model__in=MOVED).count() == len(MOVED)
    user = fresh(user)
    assert user.has_perm("core.access_all_exports")
    assert user.has_perm("core.export_auditevent") and user.has_perm("core.view_auditevent")


def test_a_new_database_has_the_moved_models_under_core_only():
    assert not ContentType.objects.filter(app_label="backoffice", model__in=MOVED).exists()
    officer = make_user("officer", group=roles.COMPLIANCE_OFFICER)
    assert officer.has_perm("core.export_auditevent") and officer.has_perm("core.view_exportjob")
