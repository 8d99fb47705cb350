"""``manage.py seed_demo``: realistic demo data (idempotent), then the demo credentials. Logic: backoffice.demo."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Load realistic demo data (tiers, templates, rules, customers, loans in every state, demo users). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--today", help="Pretend today is this date (YYYY-MM-DD); default: today in TIME_ZONE."
        )
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Seed even with DEBUG off (demo users have known passwords).",
        )

    def handle(self, *args, **options):
        from backoffice.demo import seed

        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError(
                "DEBUG is off: demo users with known passwords are refused (use --allow-production)."
            )
        today = dt.date.fromisoformat(options["today"]) if options["today"] else None
        result = seed(today=today, stdout=self.stdout)
        config, book = result["configuration"], result["book"]
        self.stdout.write(
            f"Configuration: {config['tiers']} tiers, {config['templates']} templates, {config['rules']} reminder rules."
        )
        self.stdout.write(
            f"Loan book (new rows): {book['customers']} customers, {book['loans']} loans, "
            f"{book['installments']} instalments, {book['payments']} payments."
        )
        for name, counts in result["others"].items():
            self.stdout.write(f"{name}: {counts}")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo credentials (log in at /admin/):"))
        self.stdout.write(f"  {'user':<12} {'password':<22} role")
        for username, password, role in result["users"]:
            self.stdout.write(f"  {username:<12} {password:<22} {role}")
