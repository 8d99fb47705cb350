from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DebtCollectionConfig(AppConfig):
    # The package cannot be called "collections" (it would shadow the standard library module), but the
    # app label keeps the product's name: tables, permissions and admin URLs say "collections".
    name = "debt_collection"
    label = "collections"
    verbose_name = _("Collections")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import receivers  # models are loaded only now

        receivers.connect()
