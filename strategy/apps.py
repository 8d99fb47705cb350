from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StrategyConfig(AppConfig):
    """The day's engine as one composition (the daily pipeline and the policy preview run it), the policy
    preview, the outcomes per version and arm (a job, a page, an export), and policy versions (recorded when a tier's policy is saved; the versions are the loan book's
    ``PolicyVersion`` rows, which every layer can name)."""

    name = "strategy"
    verbose_name = _("Strategy")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import exports, receivers  # noqa: F401  (receivers: the policy-saved receivers)

        exports.register()
