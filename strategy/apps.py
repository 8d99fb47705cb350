from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StrategyConfig(AppConfig):
    """The day's engine as one composition (the daily pipeline and the policy preview run it) and the policy
    preview. No models: a preview writes nothing."""

    name = "strategy"
    verbose_name = _("Strategy")
    default_auto_field = "django.db.models.BigAutoField"
