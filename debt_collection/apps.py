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
        from loans import signals as loan_signals

        from . import receivers

        loan_signals.payments_recorded.connect(
            receivers.on_payments_recorded, dispatch_uid="collections.payments_recorded"
        )
        loan_signals.tier_changed.connect(receivers.on_tier_changed, dispatch_uid="collections.tier_changed")
        # The weekly contact cap counts every contact: the call attempts made too.
        from notifications.compliance import register_contact_counter

        from .calls import attempts_per_customer

        register_contact_counter(attempts_per_customer)
