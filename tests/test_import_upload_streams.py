"""A big upload is counted and stored a block at a time from the temporary file Django wrote it to: the admin
never holds the whole file in memory (a lender's file runs to hundreds of megabytes)."""

from __future__ import annotations

import os
import stat
import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.urls import reverse

from backoffice import roles
from core.imports import admin as import_admin
from core.imports import files as import_files
from core.imports.files import count_rows
from core.imports.resource import file_sha256
from core.models import ImportJob
from loans.models import Customer
from tests.factories import make_user
from tests.test_import_jobs import HEADER, csv_format_index

pytestmark = pytest.mark.django_db

ROWS = 40_000  # about 3 MB


def big_customer_file(rows: int = ROWS) -> bytes:
    lines = [HEADER]
    for n in range(1, rows + 1):
        lines.append(
            f"BS{n:06d},Customer number {n:06d} with a longer name,138{n:08d},,,en,Asia/Shanghai,,,,,,,"
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def streamed(settings, tmp_path):
    settings.IMPORT_ROOT = tmp_path / "imports"
    settings.IMPORT_BACKGROUND_THRESHOLD = 5
    # Anything above 64 KB is written by Django's upload handler to a temporary file, as production does above
    # FILE_UPLOAD_MAX_MEMORY_SIZE.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024


def test_a_big_upload_is_counted_and_stored_without_being_read_whole(client, streamed, settings, monkeypatch):
    operator = make_user("operator-streams", group=roles.OPERATIONS)
    client.force_login(operator)
    data = big_customer_file()
    peaks = []
    real_complete = TemporaryFileUploadHandler.file_complete
    real_start = import_admin.start_import_job

    # From the moment Django's upload handler has written the file to its temporary file to the stored job:
    # what the admin does with the file.
    def completed(self, file_size):
        tracemalloc.start()
        return real_complete(self, file_size)

    def started(*args, **kwargs):
        try:
            return real_start(*args, **kwargs)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(TemporaryFileUploadHandler, "file_complete", completed)
    monkeypatch.setattr(import_admin, "start_import_job", started)
    monkeypatch.setattr(import_files, "BLOCK", 64 * 1024)  # a file of a few MB is then many blocks
    response = client.post(
        reverse("admin:loans_customer_import"),
        {"format": csv_format_index(), "import_file": SimpleUploadedFile("customers.csv", data)},
    )

    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("imports:job", args=[job.pk])
    assert job.rows_total == ROWS and job.file_sha256 == file_sha256(data)
    stored = settings.IMPORT_ROOT / job.file_path
    assert stored.read_bytes() == data
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert not list(stored.parent.glob(".*.partial"))
    # The request parsed the upload into its temporary file and copied it a block at a time: its own memory
    # stays far below the file's size (reading it whole would take at least the file's size).
    assert len(data) > 3_000_000
    assert peaks and peaks[0] < len(data) // 4, f"peak {peaks[0]:,} bytes for a file of {len(data):,}"
    assert not Customer.objects.exists()


def test_a_file_is_counted_the_same_from_its_bytes_its_path_and_an_open_file(tmp_path):
    data = big_customer_file(1000)
    path = tmp_path / "customers.csv"
    path.write_bytes(data)
    csv = "import_export.formats.base_formats.CSV"
    with open(path, "rb") as handle:
        handle.read(10)
        assert count_rows(handle, csv) == 1000
        assert handle.tell() == 0  # left at its start for whoever reads it next
    assert count_rows(path, csv) == count_rows(data, csv) == 1000
    path.write_bytes(data.rstrip(b"\n"))
    assert count_rows(path, csv) == 1000
