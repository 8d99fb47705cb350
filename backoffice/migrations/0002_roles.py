# Placeholder filled by the roles work: creates the groups and grants their permissions.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0001_initial")]
    operations = []
