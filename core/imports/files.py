"""Reading an import file: the two formats the imports support (CSV and XLSX) and how their bytes become rows.

- CSV is text in UTF-8 (with or without a byte-order mark) or, as spreadsheets exported on Chinese systems
  write it, GB18030 (a superset of GBK and GB2312). UTF-8 is tried first: a file that is valid UTF-8 is read as
  UTF-8. A file that is neither is refused naming the line that is not (``FileReadError``).
- XLSX is read from its first sheet to its real last row, a row at a time (``sheets.FirstSheet``): a workbook's
  recorded ``<dimension>`` is not trusted (some programs write ``A1`` whatever the size, and openpyxl's read-only
  mode would stop there). Empty rows at the end of the sheet are dropped.

The admin, the ``import`` command and background jobs all read files here (``read_dataset``), and count their
rows here (``count_rows``), so a file means the same rows everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import tablib
from import_export.formats import base_formats

from .sheets import FirstSheet, NotAWorkbook

#: The text encodings a CSV file may have, in the order they are tried.
CSV_ENCODINGS = ("utf-8", "gb18030")
NAMES = {"utf-8": "UTF-8", "gb18030": "GB18030 (GBK)"}


class FileReadError(ValueError):
    """A file that cannot be read as the format it was given as; the message says why, for the operator."""


def decode_text(data: bytes) -> str:
    """The text of a CSV file: UTF-8 (a leading byte-order mark dropped), else GB18030. A file that is neither is
    refused (``FileReadError``) naming the line where the encoding it reads furthest in stops making sense."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    failures: list[tuple[int, str]] = []
    for encoding in CSV_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            failures.append((exc.start, encoding))
    start, encoding = max(failures, key=lambda failure: failure[0])
    line = data.count(b"\n", 0, start) + 1
    raise FileReadError(
        f"line {line} is not {NAMES[encoding]} text (an import file in CSV is UTF-8 or GB18030/GBK): correct that "
        "line or save the file again as CSV UTF-8."
    )


class CSV(base_formats.CSV):
    """CSV read from its bytes (``decode_text``): UTF-8 with or without a byte-order mark, or GB18030."""

    def create_dataset(self, in_stream, **kwargs):
        if isinstance(in_stream, bytes | bytearray):
            in_stream = decode_text(bytes(in_stream))
        return super().create_dataset(in_stream, **kwargs)

    def get_read_mode(self):
        return "rb"  # the admin's temporary storage hands over the bytes: the encoding is found here

    def is_binary(self):
        return True


def _open_sheet(data: bytes | Path | BinaryIO) -> FirstSheet:
    """The first sheet of a workbook (``sheets.FirstSheet``: its rows streamed, to the sheet's real last row) of
    the file's bytes, path or binary file (an upload: read where it lies, never whole into memory)."""
    try:
        return FirstSheet(data)
    except NotAWorkbook as exc:
        raise FileReadError(
            "the file is not an XLSX workbook (save it as .xlsx and upload it again)."
        ) from exc


def _xlsx_rows(sheet: FirstSheet) -> list[list[Any]]:
    rows = [list(values) for values in sheet]
    while rows and all(value is None or value == "" for value in rows[-1]):
        rows.pop()
    return rows


class XLSX(base_formats.XLSX):
    """The first sheet of an XLSX workbook, to its real last row (its recorded dimension is not trusted)."""

    def create_dataset(self, in_stream):
        with _open_sheet(bytes(in_stream)) as sheet:
            rows = _xlsx_rows(sheet)
        dataset = tablib.Dataset()
        if not rows:
            return dataset
        width = max(len(row) for row in rows)
        dataset.headers = [*rows[0], *[None] * (width - len(rows[0]))]
        for row in rows[1:]:
            dataset.append([*row, *[None] * (width - len(row))])
        return dataset


#: What the admin offers and the command accepts, by name.
FORMATS: dict[str, type[base_formats.Format]] = {"CSV": CSV, "XLSX": XLSX}


def format_class(name: str | None, file_name: str | None = None) -> type[base_formats.Format]:
    """The format of a file: ``CSV`` or ``XLSX`` (any case, or the dotted path of one of django-import-export's
    or this module's classes), else guessed from ``file_name``'s extension; ``FileReadError`` for any other."""
    if not name and file_name:
        name = file_name.rsplit(".", 1)[-1] if "." in file_name else ""
    key = (name or "").rsplit(".", 1)[-1].upper()
    if key not in FORMATS:
        shown = name or "(none given)"
        raise FileReadError(f"the format {shown} is not supported: an import file is CSV or XLSX.")
    return FORMATS[key]


def read_dataset(data: bytes | str, name: str | None, file_name: str | None = None) -> tablib.Dataset:
    """The rows of a file given as bytes (a ``str`` is taken as the text of a CSV file)."""
    fmt = format_class(name, file_name)()
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        return fmt.create_dataset(data)
    except FileReadError:
        raise
    except Exception as exc:
        raise FileReadError(f"the file cannot be read as {type(fmt).__name__}: {exc}") from exc


#: How much of a file is read at a time where it is only counted or copied.
BLOCK = 1 << 20


def read_blocks(data: bytes | Path | BinaryIO, size: int | None = None) -> Iterator[bytes]:
    """The bytes of a file a block at a time (``BLOCK``): ``data`` is its bytes, its path, or a binary file (an
    upload), read from its start and left at its start for whoever reads it next."""
    size = size or BLOCK
    if isinstance(data, bytes | bytearray):
        yield bytes(data)
        return
    if isinstance(data, Path):
        with open(data, "rb") as handle:
            while block := handle.read(size):
                yield block
        return
    data.seek(0)
    try:
        while block := data.read(size):
            yield block
    finally:
        data.seek(0)


def count_rows(data: bytes | Path | BinaryIO, name: str) -> int:
    """The number of data rows of a file (its bytes, path or binary file), cheaply and a block at a time: lines
    of a CSV file (a quoted cell spanning lines counts once per line; a GB18030 file has no newline byte inside a
    character), the rows of an XLSX sheet to its real last row (its recorded dimension is not trusted)."""
    fmt = format_class(name)
    if fmt is CSV:
        lines, last = 0, b""
        for block in read_blocks(data):
            lines += block.count(b"\n")
            last = block[-1:]
        lines += 0 if last in (b"\n", b"") else 1
        return max(lines - 1, 0)
    if not isinstance(data, bytes | bytearray | Path):
        data.seek(0)
    try:
        with _open_sheet(data) as sheet:
            rows = 0
            for number, values in enumerate(sheet, 1):
                if any(value is not None and value != "" for value in values):
                    rows = number  # the last row that holds something
    finally:
        if not isinstance(data, bytes | bytearray | Path):
            data.seek(0)
    return max(rows - 1, 0)
