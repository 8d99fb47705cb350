from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

# django-q2 names its admin section after ``Q_CLUSTER["label"]``; the product's label is translated.
Q_LABEL = "Background jobs"


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = _("Back office")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from core.audit_search import register_subject_finder

        from .audit_subjects import customer_subjects
        from .roles import sync_roles_after_migrate
        from .schedules import register_schedules_after_migrate

        # Once per migrate (sender=this app): grant the roles the permissions of models added since.
        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="backoffice.sync_roles")
        # The product's django-q2 schedules, once per migrate (visible in the admin).
        post_migrate.connect(
            register_schedules_after_migrate, sender=self, dispatch_uid="backoffice.schedules"
        )
        register_subject_finder(customer_subjects)  # the audit trail found by customer reference
        if apps.is_installed("django_q"):
            q = apps.get_app_config("django_q")
            if str(q.verbose_name) == Q_LABEL:  # a label set otherwise is shown as it is
                q.verbose_name = _("Background jobs")
