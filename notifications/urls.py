from django.urls import include, path

from . import twilio_webhooks, views

app_name = "notifications"

urlpatterns = [
    path("delivery-receipts/", views.delivery_receipts, name="delivery_receipts"),
    path("twilio/status/", twilio_webhooks.twilio_status, name="twilio_status"),
    path("twilio/inbound/", twilio_webhooks.twilio_inbound, name="twilio_inbound"),
    # django-anymail's ESP webhooks: /webhooks/anymail/<esp>/tracking/ (see notifications.email_tracking).
    path("anymail/", include("anymail.urls")),
    path("inbound-sms/", views.inbound_sms, name="inbound_sms"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
