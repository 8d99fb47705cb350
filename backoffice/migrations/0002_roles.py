"""Create the groups Operations, Collector, Compliance officer and Administrator with their permissions.

The definition lives in backoffice.roles.ROLES; a post_migrate receiver re-syncs it after every migrate so
permissions of models added later are granted as well.
"""

from django.db import migrations


def create_roles(apps, schema_editor):
    from backoffice.roles import create_all_permissions, sync_roles

    using = schema_editor.connection.alias
    create_all_permissions(apps, using=using)
    sync_roles(apps, using=using)


def drop_roles(apps, schema_editor):
    from backoffice.roles import ROLES

    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("backoffice", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("loans", "0002_import_export_permissions"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
