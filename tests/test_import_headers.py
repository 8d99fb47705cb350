"""A file's header must be its resource's header: an unknown, missing or repeated column is one clear error naming
them and the expected header, and nothing is saved; in the command, the admin and a background job alike
(issue 14, point 2)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from backoffice import roles
from core.imports.jobs import run_import_job, start_import_job
from core.imports.resource import run_import
from core.models import AuditEvent, ImportJob
from loans.models import Customer
from loans.resources import CustomerResource, PaymentResource
from tests.factories import make_user

pytestmark = pytest.mark.django_db

HEADER = (
    "ref,name,phone,email,push_token,language,timezone,credit_score,opt_out_sms,opt_out_email,opt_out_push,"
    "opt_out_call,do_not_contact,do_not_contact_reason"
)
ROW = "HC1,Wang Fang,13800138000,wf@example.com,,zh-hans,Asia/Shanghai,,,,,,,"


def customers(header: str = HEADER, row: str = ROW) -> str:
    return f"{header}\n{row}\n"


def import_customers(data: str):
    return run_import(CustomerResource(), data, file_name="customers.csv")


def test_a_misspelt_key_column_is_one_error_naming_it_and_the_expected_header():
    _result, errors = import_customers(customers(HEADER.replace("ref,", "reff,", 1)))
    assert errors == [
        "file: the header does not match this import: unknown column “reff” (did you mean “ref”?); "
        f"missing column “ref”. Expected header: {HEADER}"
    ]
    assert not Customer.objects.exists()
    assert not AuditEvent.objects.filter(action="backoffice.import.completed").exists()


def test_a_misspelt_column_is_an_error_not_a_customer_saved_without_a_phone():
    _result, errors = import_customers(customers(HEADER.replace(",phone,", ",phon,")))
    assert len(errors) == 1
    assert "unknown column “phon” (did you mean “phone”?)" in errors[0]
    assert "missing column “phone”" in errors[0]
    assert not Customer.objects.exists()


def test_an_extra_column_is_an_error():
    _result, errors = import_customers(customers(HEADER + ",notes", ROW + ",call after 6pm"))
    assert errors == [
        f"file: the header does not match this import: unknown column “notes”. Expected header: {HEADER}"
    ]
    assert not Customer.objects.exists()


def test_a_missing_and_a_repeated_column_are_named():
    header = HEADER.replace(",push_token", "").replace(",email,", ",email,email,")
    _result, errors = import_customers(customers(header, ROW))
    assert len(errors) == 1
    assert "missing column “push_token”" in errors[0] and "repeated column “email”" in errors[0]
    assert not Customer.objects.exists()


def test_spaces_around_column_names_and_an_empty_trailing_column_are_accepted():
    header = " " + HEADER.replace(",name,", " , name ,") + ","
    _result, errors = import_customers(customers(header, ROW + ","))
    assert errors == []
    assert Customer.objects.get().phone == "+8613800138000"


def test_a_file_without_a_header_row_is_one_error():
    _result, errors = run_import(PaymentResource(), "", file_name="payments.csv")
    assert len(errors) == 1 and "Expected header: ref,loan_ref,installment_seq" in errors[0]


def test_the_command_exits_with_the_error_and_no_traceback(tmp_path, capsys):
    path = tmp_path / "customers.csv"
    path.write_text(customers(HEADER.replace("ref,", "reff,", 1)))
    with pytest.raises(CommandError, match="1 error"):
        call_command("import", "loans.resources.CustomerResource", str(path), "--noinput")
    assert "unknown column “reff”" in capsys.readouterr().err
    assert not Customer.objects.exists()


def _csv_format_index() -> str:
    formats = admin.site._registry[Customer].get_import_formats()
    return str(next(i for i, f in enumerate(formats) if f.__name__ == "CSV"))


def test_the_admin_shows_the_error_instead_of_a_server_error(client):
    client.force_login(make_user("importer", group=roles.OPERATIONS))
    data = customers(HEADER.replace("ref,", "reff,", 1)).encode()
    response = client.post(
        reverse("admin:loans_customer_import"),
        {"format": _csv_format_index(), "import_file": SimpleUploadedFile("customers.csv", data)},
    )
    assert response.status_code == 200
    assert "unknown column “reff”" in response.content.decode()
    assert not Customer.objects.exists()


def test_a_background_job_shows_the_error(settings, tmp_path):
    settings.IMPORT_ROOT = tmp_path / "imports"
    user = make_user("importer", group=roles.OPERATIONS)
    data = customers(HEADER.replace(",phone,", ",phon,")).encode()
    job = start_import_job(
        user, CustomerResource, data, file_name="customers.csv", format_name="CSV", dry_run=True
    )
    run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert [e["line"] for e in job.errors] == [None]
    assert "unknown column “phon”" in job.errors[0]["message"]
    assert not Customer.objects.exists()
