"""Import files as spreadsheets write them: CSV in UTF-8 (with or without a byte-order mark) or GB18030/GBK as
exported on Chinese systems, XLSX read to its real last row whatever its recorded dimension says, and only the
formats the imports support offered (issue 14, point 3)."""

from __future__ import annotations

import io
import re
import zipfile

import openpyxl
import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from backoffice import roles
from core.imports.files import FileReadError, count_rows, decode_text
from core.imports.resource import run_import
from core.models import ImportJob
from loans.models import Customer
from loans.resources import CustomerResource
from tests.factories import make_user

pytestmark = pytest.mark.django_db

HEADER = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)


def customers_text(rows: int = 3) -> str:
    lines = [HEADER] + [
        f"EF{n:03d},王小明{n},138001380{n:02d},,,zh-hans,Asia/Shanghai,,,,,,," for n in range(rows)
    ]
    return "\n".join(lines) + "\n"


def lying_xlsx(rows: int) -> bytes:
    """An XLSX file of ``rows`` customers whose sheet records its dimension as ``A1`` (as some exporters do)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for line in customers_text(rows).splitlines():
        sheet.append(line.split(","))
    buffer = io.BytesIO()
    workbook.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                content, count = re.subn(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1"/>', content)
                assert count == 1
            target.writestr(item, content)
    return out.getvalue()


def test_a_gb18030_csv_is_read_as_such():
    data = customers_text().encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    _result, errors = run_import(CustomerResource(), data, file_name="customers.csv")
    assert errors == []
    assert Customer.objects.get(ref="EF001").name == "王小明1"


def test_a_utf8_csv_with_or_without_a_byte_order_mark_is_read_as_utf8():
    text = customers_text()
    assert decode_text(text.encode("utf-8")) == text
    assert decode_text(b"\xef\xbb\xbf" + text.encode("utf-8")) == text
    _result, errors = run_import(CustomerResource(), text.encode("utf-8-sig"), file_name="customers.csv")
    assert errors == []
    assert Customer.objects.count() == 3


def test_a_csv_in_neither_encoding_names_its_line_and_the_encodings_expected():
    data = customers_text().encode("utf-8").replace("王小明1".encode(), b"Jos\xff\xfe")
    with pytest.raises(
        FileReadError, match=r"^line 3 is not UTF-8 text \(an import file in CSV is UTF-8 or GB18030/GBK\)"
    ):
        run_import(CustomerResource(), data, file_name="customers.csv")
    assert not Customer.objects.exists()


def test_the_command_reads_gb18030_and_refuses_an_unreadable_file_without_a_traceback(tmp_path):
    good = tmp_path / "customers.csv"
    good.write_bytes(customers_text().encode("gb18030"))
    call_command("import", "loans.resources.CustomerResource", str(good), "--noinput")
    assert Customer.objects.get(ref="EF002").name == "王小明2"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(customers_text().encode("utf-8").replace("王小明1".encode(), b"\xff"))
    with pytest.raises(CommandError, match=r"bad.csv: line 3 is not UTF-8 text"):
        call_command("import", "loans.resources.CustomerResource", str(bad), "--noinput")


def test_the_command_accepts_only_csv_and_xlsx(tmp_path):
    path = tmp_path / "customers.xls"
    path.write_bytes(b"whatever")
    with pytest.raises(CommandError, match="format xls is not supported: an import file is CSV or XLSX"):
        call_command("import", "loans.resources.CustomerResource", str(path), "--noinput")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("import", "loans.resources.CustomerResource", str(path), "--format", "JSON", "--noinput")


def test_an_xlsx_whose_dimension_lies_is_read_to_its_last_row():
    data = lying_xlsx(12)
    assert count_rows(data, "XLSX") == 12
    _result, errors = run_import(CustomerResource(), data, format_name="XLSX", file_name="customers.xlsx")
    assert errors == []
    assert Customer.objects.count() == 12


def test_trailing_empty_rows_of_a_sheet_are_not_rows():
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for line in customers_text(2).splitlines():
        sheet.append(line.split(","))
    sheet.cell(row=40, column=3).value = None  # touched but empty: the sheet's dimension now reaches row 40
    sheet.append([None, ""])
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert count_rows(buffer.getvalue(), "XLSX") == 2
    _result, errors = run_import(
        CustomerResource(), buffer.getvalue(), format_name="XLSX", file_name="c.xlsx"
    )
    assert errors == []
    assert Customer.objects.count() == 2


def _format_index(name: str) -> str:
    formats = admin.site._registry[Customer].get_import_formats()
    return str(next(i for i, f in enumerate(formats) if f.__name__ == name))


def test_the_admin_offers_csv_and_xlsx_only():
    for model_admin in admin.site._registry.values():
        if hasattr(model_admin, "get_import_formats"):
            assert [f.__name__ for f in model_admin.get_import_formats()] == ["CSV", "XLSX"]


def test_the_admin_reads_a_gb18030_file_and_names_the_line_of_an_unreadable_one(client):
    client.force_login(make_user("importer", group=roles.OPERATIONS))
    url = reverse("admin:loans_customer_import")
    data = customers_text().encode("gb18030")
    response = client.post(
        url, {"format": _format_index("CSV"), "import_file": SimpleUploadedFile("c.csv", data)}
    )
    assert response.status_code == 200 and response.context["confirm_form"] is not None
    bad = data.replace("王小明1".encode("gb18030"), b"\xff")
    response = client.post(
        url, {"format": _format_index("CSV"), "import_file": SimpleUploadedFile("c.csv", bad)}
    )
    assert response.status_code == 200
    assert "line 3 is not GB18030 (GBK) text" in response.content.decode()
    assert not Customer.objects.exists()


def test_the_admin_sends_a_large_xlsx_whose_dimension_lies_to_the_background(client, settings):
    settings.IMPORT_BACKGROUND_THRESHOLD = 5
    client.force_login(make_user("importer", group=roles.OPERATIONS))
    response = client.post(
        reverse("admin:loans_customer_import"),
        {"format": _format_index("XLSX"), "import_file": SimpleUploadedFile("c.xlsx", lying_xlsx(12))},
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302 and job.rows_total == 12
