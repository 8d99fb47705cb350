from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import signals  # noqa: F401
        from .roles import sync_roles_after_migrate

        # Once per migrate (sender=this app): grant the roles the permissions of models added since.
        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="backoffice.sync_roles")
