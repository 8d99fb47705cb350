"""The four roles of the back office, as groups with permissions, defined here and nowhere else.

``ROLES`` maps a group name to ``{app_label: [codename patterns]}``. Patterns are shell-style (``view_*``);
a pattern starting with ``-`` takes matching codenames out again. ``"*"`` as app label means every app.
Labels of apps still being written (``notifications``, ``collections``, ``django_q``) are listed already: their
permissions are granted as soon as their models exist.

The migration ``backoffice.0002_roles`` creates the groups, and ``sync_roles`` runs again after every
``migrate`` (post_migrate, see ``backoffice.apps``) so permissions of models added later are granted too.
Syncing only ADDS what the definition grants: a permission an administrator removed by hand from a group
comes back after the next migrate, but one granted by hand is never taken away. To take a permission from a
role for good, change ``ROLES`` and remove it from the group in the admin.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from debt_collection.assignment import COLLECTOR

OPERATIONS = "Operations"
TEAM_LEAD = "Collections team lead"
COMPLIANCE_OFFICER = "Compliance officer"
ADMINISTRATOR = "Administrator"

_COLLECTOR: dict[str, list[str]] = {
    "loans": ["view_customer", "view_loan", "view_installment", "view_payment", "view_personal_data"],
    "notifications": ["view_notificationlog", "view_notificationitem"],
    "collections": [
        "view_collectioncase",
        "view_casesteprun",
        "view_calltask",
        "change_calltask",
        "add_calltask",
        "record_call_outcome",
        "view_callattempt",
        "view_promisetopay",
        "change_promisetopay",
        "add_promisetopay",
        "view_agency",
        "view_agencyplacement",
        "view_legalreferral",
        "place_with_agency",
        "refer_to_legal",
    ],
}

ROLES: dict[str, dict[str, list[str]]] = {
    # Configure tiers, templates, rules, contact policy and escalation steps; load the loan book; record
    # payments; read every log.
    OPERATIONS: {
        "loans": [
            "view_*",
            "view_personal_data",
            "add_credittier",
            "change_credittier",
            "delete_credittier",
            "change_customer",
            "add_payment",
            "run_policy_test",
            "promote_challenger",
            "import_*",
            "export_*",
        ],
        "notifications": [
            "view_*",
            "add_remindertemplate",
            "change_remindertemplate",
            "delete_remindertemplate",
            "add_reminderrule",
            "change_reminderrule",
            "delete_reminderrule",
            "change_contactpolicy",
            "add_jurisdictionpolicy",
            "change_jurisdictionpolicy",
            "import_*",
            "export_*",
        ],
        "collections": [
            "view_*",
            "add_escalationstep",
            "change_escalationstep",
            "delete_escalationstep",
            "add_agency",
            "change_agency",
            # Operations look after the agencies' contracts and hand them their files (which hold personal
            # data when the contract allows it); collectors decide the placement, not the transfer.
            "download_placement_file",
            # Operations own the policy: moving open cases onto a tier's new version is theirs.
            "migrate_case_policy",
            "import_*",
            "export_*",
        ],
        "core": ["view_*", "export_*"],
        "strategy": ["view_*", "export_*"],
        "backoffice": ["view_*", "run_pipeline"],
        "django_q": ["view_*"],
    },
    # Work overdue cases: the call queue, outcomes, promises to pay, hand-over to an agency or to legal.
    COLLECTOR: _COLLECTOR,
    # Lead the collectors: everything a collector does, on every collector's queue, and hand their call tasks
    # to another member of the Collector group (only Collectors receive call tasks).
    TEAM_LEAD: {**_COLLECTOR, "collections": [*_COLLECTOR["collections"], "view_all_calltasks"]},
    # Review and export for a regulator; never edit. Personal data stays masked unless granted by hand.
    COMPLIANCE_OFFICER: {
        "*": ["view_*", "export_*", "-view_personal_data"],
    },
    ADMINISTRATOR: {
        "*": ["*"],
    },
}

# Apps whose permissions the roles are about ("*" means these; auth, sessions... only for Administrator).
PRODUCT_APPS = ("core", "loans", "notifications", "collections", "strategy", "backoffice", "django_q")


def codename_matches(codename: str, patterns: list[str]) -> bool:
    granted = any(fnmatchcase(codename, p) for p in patterns if not p.startswith("-"))
    denied = any(fnmatchcase(codename, p[1:]) for p in patterns if p.startswith("-"))
    return granted and not denied


def permissions_for(role: str, permissions) -> list:
    """The permissions (rows of ``permissions``, each with ``codename`` and ``content_type.app_label``) a
    role is granted."""
    spec = ROLES[role]
    chosen = []
    for perm in permissions:
        label = perm.content_type.app_label
        if label in spec:
            patterns = spec[label]
        elif "*" in spec and (role == ADMINISTRATOR or label in PRODUCT_APPS):
            patterns = spec["*"]
        else:
            continue
        if codename_matches(perm.codename, patterns):
            chosen.append(perm)
    return chosen


def sync_roles(apps=None, using: str = "default") -> dict[str, int]:
    """Create the groups of ``ROLES`` if missing and grant what they lack (idempotent; never revokes).

    ``apps`` is a migration state registry (from a migration or post_migrate) or None for the live models.
    Returns how many permissions were added per group.
    """
    if apps is None:
        from django.apps import apps as live_apps

        apps = live_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    every = list(Permission.objects.using(using).select_related("content_type"))
    added = {}
    for role in ROLES:
        group, _created = Group.objects.using(using).get_or_create(name=role)
        have = set(group.permissions.values_list("pk", flat=True))
        missing = [p for p in permissions_for(role, every) if p.pk not in have]
        if missing:
            group.permissions.add(*missing)
        added[role] = len(missing)
    return added


def create_all_permissions(apps=None, using: str = "default") -> None:
    """Make sure every model's permissions exist as rows (Django creates them only after a full migrate)."""
    from django.contrib.auth.management import create_permissions

    if apps is None:
        from django.apps import apps as live_apps

        apps = live_apps
    for app_config in apps.get_app_configs():
        if getattr(app_config, "models_module", None) is None:  # state registries (migrations) have stubs
            app_config.models_module = True
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
            app_config.models_module = None
        else:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)


def sync_roles_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate receiver: grant the permissions of models added by later migrations."""
    from django.apps import apps as live_apps

    create_all_permissions(live_apps, using=using)
    sync_roles(live_apps, using=using)
