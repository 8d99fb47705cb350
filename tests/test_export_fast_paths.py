"""The export's fast paths give exactly what the plain ones give.

The notification export reads raw driver rows (times as text), masks a message with ``mask_customer_text`` (the
email and phone scans of ``_mask_emails`` and a cached ``PHONE_RE.sub``), escapes formula cells as it builds
each row and writes CSV by batch, hashing as it writes. Each of these is checked here against a plain
reference: the regular expressions applied as written, ``values_list().iterator()`` with Django's converters,
``cell`` on every cell and ``csv.writer`` row by row.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import random
import re

import openpyxl
import pytest
from django.db import connection

from core import masking
from core.exports.files import export_to_file
from core.exports.rows import moment
from core.exports.writers import cell
from core.masking import (
    EMAIL_RE,
    MIN_INTERNATIONAL_DIGITS,
    MIN_PHONE_DIGITS,
    PHONE_RE,
    country_code_of,
    mask_customer_text,
    mask_destination,
    mask_email,
    mask_name,
    mask_phone,
    mask_text,
)
from notifications.exports import NOTIFICATION_COLUMNS
from notifications.models import NotificationLog
from tests.factories import make_customer
from tests.factories_audit import make_notification

# --- The plain reference: the masking rules as first written, one regular expression at a time ------------


def ref_mask_name(name: str) -> str:
    if not name:
        return name or ""
    words = []
    for word in name.split(" "):
        if not word:
            words.append(word)
        elif len(word) == 1:
            words.append(word if not word.isalpha() else "*")
        else:
            words.append(word[0] + "*" * (len(word) - 1))
    return " ".join(words)


def ref_mask_phone(phone: str) -> str:
    if not phone:
        return phone or ""
    raw = phone.strip()
    digits = re.sub(r"\D", "", raw)
    prefix, national = "", digits
    if raw.startswith("+"):
        cc = country_code_of(digits)
        prefix, national = (f"+{cc}", digits[len(cc) :]) if cc else ("+", digits)
    if len(national) >= 8:
        return prefix + national[:3] + "*" * (len(national) - 7) + national[-4:]
    if len(national) > 2:
        return prefix + "*" * (len(national) - 2) + national[-2:]
    return prefix + "*" * len(national)


def ref_mask_destination(destination: str) -> str:
    if not destination:
        return destination or ""
    if "@" in destination:
        return mask_email(destination)
    if re.fullmatch(r"\+?[\d\- ()]{5,}", destination.strip()):
        return ref_mask_phone(destination)
    return destination[:4] + "****"


def ref_phone_variants(phone: str) -> set[str]:
    variants = {phone}
    digits = re.sub(r"\D", "", phone)
    if digits:
        variants.add(digits)
    if phone.startswith("+"):
        cc = country_code_of(digits)
        if cc:
            variants.add(digits[len(cc) :].lstrip("0") or digits[len(cc) :])
    return {v for v in variants if len(v) >= 5}


def ref_name_parts(name: str) -> set[str]:
    parts = {name}
    parts.update(w for w in name.split() if len(w) >= 3)
    if name and len(name) >= 3 and all(masking._is_cjk(c) for c in name):
        parts.add(name[1:])
    return {p for p in parts if p}


def ref_found_phone(match: re.Match) -> str:
    text = match.group(1)
    digits = re.sub(r"\D", "", text)
    threshold = MIN_INTERNATIONAL_DIGITS if text.startswith("+") else MIN_PHONE_DIGITS
    if len(digits) < threshold:
        return match.group(0)
    return ref_mask_phone(("+" if text.startswith("+") else "") + digits)


def ref_mask_text(text, *, names=(), phones=(), emails=()):
    if not isinstance(text, str) or not text:
        return text
    longest_first = lambda values: sorted(sorted(set(values)), key=len, reverse=True)  # noqa: E731
    for old in longest_first(e for e in emails if e):
        text = text.replace(old, mask_email(old))
    if "@" in text:
        text = EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)
    for old in longest_first(v for p in phones if p for v in ref_phone_variants(p)):
        text = text.replace(old, ref_mask_phone(old))
    text = PHONE_RE.sub(ref_found_phone, text)
    for old in longest_first(p for n in names if n for p in ref_name_parts(n)):
        text = text.replace(old, ref_mask_name(old))
    return text


# --- Masking: random texts made of what the rules look at ----------------------------------------------------

PIECES = [
    "@", "a@b.cn", "x.y@ex.org", ".com", "+86", "138", "1234", "5678", "13812345678", "+8613812345678",
    "+86 138 1234 5678", "(", ")", " ", "-", "+(", "(+", "++", "Alice", "Smith", "张小明", "小明", "王五",
    "mail", "١٣٨١٢٣٤٥٦٧٨", "１３８１２３４５６７８", "0", "L2026000123", "2026-12-01", "1,234.56", "\n", "\t", ",",
]  # fmt: skip
CHARS = "ab1 2-().+@_%xZ9中\n03456789.c"
NAMES = [
    "Alice Smith",
    "张小明",
    "王五",
    "",
    "Al",
    "Alice Smith Jones",
    "x1y",
    " Alice",
    "欧阳小明",
    "A",
    "1",
]
PHONES = ["+8613812345678", "13812345678", "138 1234 5678", "", "+1 (202) 555-0123", "+0861234567", "12345"]
EMAILS = ["alice@example.com", "", "a@b.cn", "x.y@ex.org"]


def random_text(rnd: random.Random) -> str:
    return "".join(
        rnd.choice(PIECES) if rnd.random() < 0.5 else "".join(rnd.choices(CHARS, k=rnd.randint(1, 6)))
        for _ in range(rnd.randint(0, 12))
    )


@pytest.mark.parametrize("seed", range(4))
def test_masking_gives_what_the_plain_rules_give(seed):
    rnd = random.Random(seed)
    for _ in range(5000):
        text = random_text(rnd)
        assert masking._mask_emails(text) == EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text), text
        assert [m.span() for m in masking._PHONE_SCAN_RE.finditer(text)] == [
            m.span(1) for m in PHONE_RE.finditer(text)
        ], text
        assert masking._PHONE_SCAN_RE.sub(masking._mask_found_phone, text) == PHONE_RE.sub(
            ref_found_phone, text
        )
        for value in (text, text[:14]):
            assert mask_phone(value) == ref_mask_phone(value), value
            assert mask_name(value) == ref_mask_name(value), value
            assert mask_destination(value) == ref_mask_destination(value), value
            assert set(masking._name_parts(value)) == ref_name_parts(value), value
            assert set(masking._phone_variants(value)) == ref_phone_variants(value), value
        name = rnd.choice(NAMES + [random_text(rnd)[:12]])
        phone = rnd.choice(PHONES + [random_text(rnd)[:14]])
        email = rnd.choice(EMAILS)
        expected = ref_mask_text(text, names=(name,), phones=(phone,), emails=(email,))
        assert mask_customer_text(text, name, phone, email) == expected, (text, name, phone, email)
        assert mask_text(text, names=(name,), phones=(phone,), emails=(email,)) == expected
        names, phones = rnd.sample(NAMES, 2), rnd.sample(PHONES, 2)
        assert mask_text(text, names=names, phones=phones, emails=EMAILS) == ref_mask_text(
            text, names=names, phones=phones, emails=EMAILS
        )


def test_a_phone_whose_last_digits_appear_elsewhere_is_still_masked_everywhere():
    text = "Ref 45678, call 13812345678 or +86 138 1234 5678."
    expected = ref_mask_text(text, phones=("+8613812345678",))
    assert mask_customer_text(text, "", "+8613812345678", "") == expected
    assert "13812345678" not in expected


# --- The export: every column, masked or not, in every format --------------------------------------------

DANGEROUS = ['=HYPERLINK("http://evil","x")', "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR", "=1+1"]


@pytest.fixture
def tricky_log(db):
    """Rows that exercise every branch: formula cells in every text column, names and phones of every shape,
    emails and phones in bodies, no sent time, whole-second and fractional times."""
    customers = [
        make_customer(name="Alice Smith", phone="+8613812345678", email="alice.smith@example.com"),
        make_customer(name="张小明", phone="+8613912345678", email="xiaoming@example.cn"),
        make_customer(name="=1+1", phone="138 1234 5679", email=""),
        make_customer(ref="+C1", name="欧阳 小明", phone="", email="ouyang@example.com"),
    ]
    bodies = [
        "Dear Alice, call 138 1234 5678 or write to bob@other.org, a@b.cn.x@c.cn. Due 2026-12-01, CNY 1,234.56.",
        "张小明您好，请致电13912345678或１３９１２３４５６７８确认。到期日 2026-12-01。",
        "-2+3 then +86 139 1234 5678, ref L2026000123, 45678",
        "",
    ]
    moments = [
        dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 20, 10, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        dt.datetime(2026, 11, 21, 0, 0, 0, 500, tzinfo=dt.UTC),
    ]
    n = 0
    for customer in customers:
        for body in bodies:
            for dangerous in DANGEROUS:
                n += 1
                make_notification(
                    customer,
                    channel="email" if n % 2 else "sms",
                    destination=[customer.email, customer.phone, "device-token-abcdef", dangerous][n % 4],
                    subject=[dangerous, "", f"{customer.name}: payment due", "Hi\n=x"][n % 4],
                    body=body if n % 3 else dangerous + body,
                    loan_refs=dangerous if n % 5 == 0 else f"L{n:07d}",
                    provider_message_id=dangerous if n % 7 == 0 else f"outbox-{n}",
                    reason="" if n % 2 else "frequency_cap",
                    status="sent" if n % 2 else "suppressed",
                    scheduled_for=moments[n % 3],
                    sent_at=None if n % 4 == 0 else moments[(n + 1) % 3],
                    attempts=n % 3,
                )
    return customers


_FIELDS = (
    "id", "customer__ref", "customer__name", "loan_refs", "channel", "kind", "status", "reason", "scheduled_for",
    "sent_at", "destination", "subject", "body", "attempts", "provider_message_id", "customer__phone",
    "customer__email",
)  # fmt: skip


def reference_rows(*, masked: bool) -> list[list]:
    """The export's rows the plain way: Django's converters, ``ref_mask_text`` on whole values, no cache."""
    rows = []
    for values in NotificationLog.objects.order_by("id").values_list(*_FIELDS).iterator():
        row = dict(zip(_FIELDS, values, strict=True))
        if masked:
            known = {
                "names": (row["customer__name"] or "",),
                "phones": (row["customer__phone"] or "",),
                "emails": (row["customer__email"] or "",),
            }
            row["subject"] = ref_mask_text(row["subject"] or "", **known)
            row["body"] = ref_mask_text(row["body"] or "", **known)
            row["customer__name"] = ref_mask_name(row["customer__name"] or "")
            row["destination"] = ref_mask_destination(row["destination"] or "")
        row["scheduled_for"], row["sent_at"] = moment(row["scheduled_for"]), moment(row["sent_at"])
        rows.append([row[f] for f in _FIELDS[:15]])
    return rows


def reference_csv(rows: list[list]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(NOTIFICATION_COLUMNS)
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue().encode("utf-8-sig")


@pytest.mark.parametrize("masked", [True, False])
def test_the_csv_export_is_byte_for_byte_the_plain_one(tricky_log, tmp_path, masked):
    out = tmp_path / "n.csv"
    result = export_to_file("notifications", "csv", out, masked=masked)
    expected = reference_csv(reference_rows(masked=masked))
    assert out.read_bytes() == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest() == result.manifest["sha256"]
    assert result.rows == NotificationLog.objects.count() == 112


@pytest.mark.parametrize("masked", [True, False])
def test_the_json_export_holds_the_plain_values_unescaped(tricky_log, tmp_path, masked):
    out = tmp_path / "n.json"
    export_to_file("notifications", "json", out, masked=masked)
    expected = [dict(zip(NOTIFICATION_COLUMNS, row, strict=True)) for row in reference_rows(masked=masked)]
    assert json.loads(out.read_text(encoding="utf-8")) == expected
    assert any(str(v).startswith(tuple("=+-@")) for row in expected for v in row.values())


def test_the_xlsx_export_holds_the_plain_cells(tricky_log, tmp_path):
    out = tmp_path / "n.xlsx"
    export_to_file("notifications", "xlsx", out, masked=True)
    sheet = openpyxl.load_workbook(out, read_only=True).active
    cells = [
        ["" if v is None else v.replace("_x000D_", "\r") if isinstance(v, str) else v for v in row]
        for row in sheet.iter_rows(values_only=True)
    ]
    expected = [list(NOTIFICATION_COLUMNS)] + [[cell(v) for v in row] for row in reference_rows(masked=True)]
    assert cells == expected


@pytest.mark.parametrize("column", ["customer_ref", "customer_name", "loan_refs", "reason", "destination",
                                    "subject", "body", "provider_message_id", "channel", "kind", "status"])  # fmt: skip
@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_every_text_column_of_the_csv_export_is_escaped(db, tmp_path, column, prefix):
    value = prefix + "cmd"
    customer = make_customer(
        **{"customer_ref": {"ref": value}, "customer_name": {"name": value}}.get(column, {})
    )
    row = make_notification(customer, body="plain", subject="plain", destination="device-token-abcdef")
    if column not in ("customer_ref", "customer_name"):
        NotificationLog.objects.filter(pk=row.pk).update(**{column: value})
    out = tmp_path / "n.csv"
    export_to_file("notifications", "csv", out, masked=False)
    with out.open(encoding="utf-8-sig", newline="") as fh:
        (header, cells) = list(csv.reader(fh))
    assert cells[header.index(column)] == "'" + value


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite stores times as text")
def test_a_time_stored_in_another_spelling_is_still_written_in_utc(db, tmp_path):
    row = make_notification()
    with connection.cursor() as cursor:
        table = NotificationLog._meta.db_table
        cursor.execute(
            f'UPDATE "{table}" SET scheduled_for = %s, sent_at = %s WHERE id = %s',
            ["2026-11-20T10:00:00+08:00", "2026-11-20 02:00:00.000000", row.pk],
        )
    out = tmp_path / "n.json"
    export_to_file("notifications", "json", out)
    (exported,) = json.loads(out.read_text(encoding="utf-8"))
    assert exported["scheduled_for"] == "2026-11-20T02:00:00+00:00"
    assert exported["sent_at"] == "2026-11-20T02:00:00+00:00"
