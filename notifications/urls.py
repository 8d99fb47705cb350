from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("delivery-receipts/", views.delivery_receipts, name="delivery_receipts"),
]
