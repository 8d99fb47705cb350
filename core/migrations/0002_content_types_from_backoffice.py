"""The moved models' content types follow them from ``backoffice`` to ``core``, so the permissions granted on
them (to roles, to users) and the admin's history keep pointing at the same rows.

On a database migrated before the move, the rows are renamed in place. On a new database, the roles
migration (``backoffice.0002_roles``) created them under ``backoffice`` a moment ago: they are renamed the
same way. Where both exist already (a ``core`` row made by a migrate that stopped half way), the old row's
permissions are merged into the new one's, with their grants, and the old row goes."""

from django.conf import settings
from django.db import migrations

MODELS = ("auditevent", "auditchainhead", "auditverification", "exportjob", "importjob")


def move_content_types(apps, schema_editor, old="backoffice", new="core"):
    db = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    LogEntry = apps.get_model("admin", "LogEntry")
    grants = (Group.permissions.through, User.user_permissions.through)
    for model in MODELS:
        source = ContentType.objects.using(db).filter(app_label=old, model=model).first()
        if source is None:
            continue
        target = ContentType.objects.using(db).filter(app_label=new, model=model).first()
        if target is None:
            source.app_label = new
            source.save(using=db, update_fields=["app_label"])
            continue
        for perm in Permission.objects.using(db).filter(content_type=source):
            twin = Permission.objects.using(db).filter(content_type=target, codename=perm.codename).first()
            if twin is None:
                perm.content_type = target
                perm.save(using=db, update_fields=["content_type"])
                continue
            for through in grants:
                owner = next(f.name for f in through._meta.fields if f.name not in ("id", "permission"))
                have = set(through.objects.using(db).filter(permission=twin).values_list(f"{owner}_id", flat=True))
                for row in through.objects.using(db).filter(permission=perm):
                    if getattr(row, f"{owner}_id") not in have:
                        through.objects.using(db).create(**{f"{owner}_id": getattr(row, f"{owner}_id"), "permission": twin})
            perm.delete()
        LogEntry.objects.using(db).filter(content_type=source).update(content_type=target)
        source.delete()


def move_back(apps, schema_editor):
    move_content_types(apps, schema_editor, old="core", new="backoffice")


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0001_initial"),
        ("backoffice", "0009_move_shared_models_to_core"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(move_content_types, move_back)]
