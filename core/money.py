"""How an amount of money reads on the operator screens, in the operator's language: the currency always, the
thousands grouped, two decimals. English puts the ISO code first ("CNY 12,000.00"); Chinese uses the symbol
of the currencies it has one for ("¥12,000.00", "US$1,200.00") and the code otherwise."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils.translation import get_language

# Symbols a Chinese-speaking operator reads without thinking; other currencies keep their ISO code.
ZH_SYMBOLS = {"CNY": "¥", "USD": "US$", "HKD": "HK$", "SGD": "S$", "EUR": "€", "GBP": "£", "JPY": "JP¥"}


def format_money(amount, currency: str = "", language: str | None = None) -> str:
    """``amount`` (Decimal, int, float or numeric text) in ``currency`` for ``language`` (default: the active
    one). An empty amount reads as "—"; a text that is not a number is returned as it is."""
    if amount is None or amount == "":
        return "—"
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return str(amount)
    sign = "-" if value < 0 else ""
    digits = f"{abs(value):,.2f}"
    code = (currency or "").upper()
    language = (language or get_language() or "en").lower()
    if language.startswith("zh"):
        if code in ZH_SYMBOLS:
            return f"{sign}{ZH_SYMBOLS[code]}{digits}"
        return f"{sign}{code} {digits}".strip()
    return f"{sign}{code} {digits}".strip() if code else f"{sign}{digits}"


def money_display(field: str, currency_of, *, description):
    """An admin list column showing ``obj.<field>`` as money in the currency ``currency_of(obj)`` returns,
    sorted by the field."""
    from django.contrib import admin

    @admin.display(description=description, ordering=field)
    def display(self, obj):
        return format_money(getattr(obj, field), currency_of(obj))

    return display
