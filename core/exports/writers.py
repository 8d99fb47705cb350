"""The export file formats: CSV (UTF-8 with a byte-order mark, hashed as written), XLSX (constant memory) and
JSON (a streamed array), each written a batch of rows at a time, every cell a spreadsheet would run escaped."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

FORMATS = ("csv", "xlsx", "json")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_FIRST = frozenset(FORMULA_PREFIXES)
XLSX_MAX_CELL = 32767


def escape_formula(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading single quote (numbers are untouched)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def cell(value: Any) -> Any:
    """A value as a flat spreadsheet cell: JSON text for objects, empty for nothing, escaped text."""
    cls = value.__class__
    if cls is str:  # the common case first: it runs for most cells of millions of rows
        return "'" + value if value and value[0] in FORMULA_FIRST else value
    if cls is int:
        return value
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    if isinstance(value, bool):
        value = str(value).lower()
    return escape_formula(value)


class _Lines(list):
    """Where ``csv.writer`` writes: each row's line appended (``write`` is ``list.append``, no Python call)."""

    write = list.append


class CsvWriter:
    """CSV in UTF-8 with a byte-order mark, written a batch at a time and hashed as it is written.

    ``plain`` rows (only text, integers and None, already escaped: a kind's ``plain`` batches) are written as
    they are; other rows (audit: JSON values, booleans) go cell by cell through ``cell``."""

    def __init__(self, path: Path, columns: tuple[str, ...], *, plain: bool = False):
        self.fh = path.open("wb")
        self.digest = hashlib.sha256()
        self.plain = plain
        self.lines = _Lines()
        self.writer = csv.writer(self.lines)
        # The byte-order mark: Excel opens Chinese names correctly only with it.
        self._emit(codecs.BOM_UTF8)
        self.writer.writerow(columns)
        self._emit("".join(self.lines).encode("utf-8"))

    def _emit(self, data: bytes) -> None:
        self.digest.update(data)
        self.fh.write(data)

    def write_batch(self, rows: list[tuple]) -> None:
        lines = self.lines
        lines.clear()
        if self.plain:
            self.writer.writerows(rows)
        else:
            self.writer.writerows([[cell(v) for v in row] for row in rows])
        self._emit("".join(lines).encode("utf-8"))

    def sha256(self) -> str | None:
        return self.digest.hexdigest()

    def close(self) -> None:
        self.fh.close()


class XlsxWriter:
    def __init__(self, path: Path, columns: tuple[str, ...], *, plain: bool = False):
        import xlsxwriter

        self.workbook = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        self.sheet = self.workbook.add_worksheet("export")
        for col, name in enumerate(columns):
            self.sheet.write_string(0, col, name)
        self.row = 1

    def write_batch(self, rows: list[tuple]) -> None:
        for row in rows:
            for col, raw in enumerate(row):
                value = cell(raw)
                if isinstance(value, int | float):
                    self.sheet.write_number(self.row, col, value)
                else:
                    self.sheet.write_string(self.row, col, str(value)[:XLSX_MAX_CELL])
            self.row += 1

    def sha256(self) -> str | None:
        return None  # hashed from the file once it is complete

    def close(self) -> None:
        self.workbook.close()


class JsonWriter:
    def __init__(self, path: Path, columns: tuple[str, ...], *, plain: bool = False):
        self.fh = path.open("w", encoding="utf-8")
        self.fh.write("[")
        self.columns = columns
        self.first = True

    def write_batch(self, rows: list[tuple]) -> None:
        for row in rows:
            self.fh.write("\n" if self.first else ",\n")
            self.fh.write(
                json.dumps(
                    dict(zip(self.columns, row, strict=True)), ensure_ascii=False, cls=DjangoJSONEncoder
                )
            )
            self.first = False

    def sha256(self) -> str | None:
        return None

    def close(self) -> None:
        self.fh.write("\n]\n")
        self.fh.close()


WRITERS = {"csv": CsvWriter, "xlsx": XlsxWriter, "json": JsonWriter}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
