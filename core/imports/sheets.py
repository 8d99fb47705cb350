"""The first sheet of an XLSX workbook, a row at a time, in memory that does not grow with the sheet.

openpyxl's read-only mode streams a sheet's rows, but (a) on opening it parses the whole sheet to find its
``<dimension>`` when the workbook records none before the rows (openpyxl's own write-only mode writes none), and
(b) while it streams it keeps every row's emptied element under ``<sheetData>``: about 80 bytes a row, 80 MB for
a 1,000,000-row sheet, in each pass over the file. ``FirstSheet`` reads the workbook's parts with openpyxl (its
content types, shared strings, sheets, and the styles and epoch that tell a date from a number) and the sheet's
XML itself, each row dropped from the tree once read. Its rows are the values of openpyxl's
``iter_rows(values_only=True)`` after ``reset_dimensions()``: a cell's value as openpyxl reads it (the cases it
reads cheaply here, the others by openpyxl's own ``WorkSheetParser.parse_cell``), a row as wide as its last
cell, a missing row as an empty one, a row repeated or out of order skipped.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from openpyxl.reader.excel import ExcelReader
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils.cell import coordinate_to_tuple
from openpyxl.worksheet._reader import WorkSheetParser
from openpyxl.xml.constants import SHEET_MAIN_NS
from openpyxl.xml.functions import iterparse

ROW = f"{{{SHEET_MAIN_NS}}}row"
CELL = f"{{{SHEET_MAIN_NS}}}c"
VALUE = f"{{{SHEET_MAIN_NS}}}v"
INLINE = f"{{{SHEET_MAIN_NS}}}is"
TEXT = f"{{{SHEET_MAIN_NS}}}t"
SHEET_DATA = f"{{{SHEET_MAIN_NS}}}sheetData"


class NotAWorkbook(ValueError):
    """The file is not an XLSX workbook, or has no worksheet to read."""


class FirstSheet:
    """The workbook's active sheet (the first, unless the workbook says another), each iteration its rows from the
    start as tuples of values. ``data`` is the file's bytes, path, or a binary file (read where it lies). Close
    it (or use it as a context manager) to close the file."""

    def __init__(self, data: bytes | Path | BinaryIO):
        try:
            reader = ExcelReader(io.BytesIO(data) if isinstance(data, bytes) else data, read_only=True)
        except Exception as exc:  # not a zip: zipfile and openpyxl raise several kinds
            raise NotAWorkbook("not a workbook") from exc
        self._archive = reader.archive
        try:
            reader.read_manifest()
            reader.read_strings()
            reader.read_workbook()
            apply_stylesheet(reader.archive, reader.wb)
            # The sheets in the order openpyxl's workbook lists them (a chartsheet counts, a part missing from
            # the archive does not), of which its ``active`` is the one the workbook view names.
            targets = [
                None if "chartsheet" in rel.Type else rel.target
                for _sheet, rel in reader.parser.find_sheets()
                if rel.target in reader.valid_files
            ]
        except Exception as exc:
            self.close()
            raise NotAWorkbook("not a workbook") from exc
        index = reader.wb._active_sheet_index
        self._path = targets[index] if 0 <= index < len(targets) else None
        if self._path is None:
            self.close()
            raise NotAWorkbook("no worksheet")
        self._strings = reader.shared_strings
        wb = reader.wb
        self._epoch = wb.epoch
        self._date_formats = wb._date_formats
        self._timedelta_formats = wb._timedelta_formats

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> FirstSheet:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple]:
        counter = 1
        for number, cells in self._rows():
            while counter < number:
                counter += 1
                yield ()
            if counter > number:
                continue  # openpyxl's read-only mode skips a row numbered before one it has given
            counter += 1
            if not cells:
                yield ()
                continue
            width = cells[-1][0]  # as openpyxl: the last cell's column, a cell beyond it dropped
            values: list[Any] = [None] * width
            for column, value in cells:
                if 1 <= column <= width:
                    values[column - 1] = value
            yield tuple(values)

    def _rows(self) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
        """(row number, [(column, value), ...]) of each ``<row>`` of the sheet, in the file's order."""
        strings, date_formats = self._strings, self._date_formats
        with self._archive.open(self._path) as source:
            # openpyxl's reading of a cell, for the cases read below with its help
            parser = WorkSheetParser(
                None,
                strings,
                data_only=True,
                epoch=self._epoch,
                date_formats=date_formats,
                timedelta_formats=self._timedelta_formats,
            )
            sheet_data = None
            number = 0
            for event, element in iterparse(source, events=("start", "end")):
                if event == "start":
                    if element.tag == SHEET_DATA:
                        sheet_data = element
                    continue
                if element.tag != ROW:
                    continue
                r = element.get("r")
                if r is None:
                    number += 1
                else:
                    try:
                        number = int(r)
                    except ValueError:
                        as_float = float(r)
                        if not as_float.is_integer():
                            raise ValueError(f"{r} is not a valid row number") from None
                        number = int(as_float)
                cells = []
                column = 0
                for cell in element:
                    # a row's children are its cells (openpyxl reads any child as one)
                    coordinate = cell.get("r")
                    column = coordinate_to_tuple(coordinate)[1] if coordinate else column + 1
                    kind = cell.get("t", "n")
                    if kind == "inlineStr":
                        text = cell.find(INLINE)
                        if text is None:
                            value = None
                        elif len(text) == 1 and text[0].tag == TEXT and not text.attrib:
                            value = text[0].text or ""
                        else:
                            value = parser.parse_cell(cell)["value"]
                    else:
                        value = cell.findtext(VALUE, None) or None
                        if value is None:
                            pass
                        elif kind == "n":
                            style = cell.get("s", 0)
                            if style and int(style) in date_formats:
                                value = parser.parse_cell(cell)["value"]  # a date, a time or a duration
                            elif "." in value or "E" in value or "e" in value:
                                value = float(value)
                            else:
                                value = int(value)
                        elif kind == "s":
                            value = strings[int(value)]
                        elif kind == "b":
                            value = bool(int(value))
                        elif kind != "str":
                            value = parser.parse_cell(cell)["value"]  # an ISO date, an error
                    cells.append((column, value))
                element.clear()
                if sheet_data is not None:
                    del sheet_data[:]  # the row is read: nothing keeps it
                yield number, cells
