from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    """What every app shares: the audit trail, masking, database helpers, import and export machinery."""

    name = "core"
    verbose_name = _("Audit and compliance")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import signals  # noqa: F401
        from .exports import audit
        from .lookups import register
        from .pg_adapters import register as register_fast_adapters

        register()  # field__any_of, the daily jobs' lookup for long lists of ids
        register_fast_adapters()  # PostgreSQL: timestamps read, arrays written in one pass
        audit.register()  # the audit trail as a compliance export kind
