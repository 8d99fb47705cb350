"""An import file's rows, read as they are imported: the file is never held as a table in memory.

``open_rows(data, format_name, file_name)`` gives a ``RowSource`` of a file given as bytes or as a path: its
header, its number of data rows and, each time it is iterated, its data rows from the start (a row is a tuple of
cells, padded to the header's width). Opening it reads the file once, as cheaply as it can, to know what the
import must know first: the encoding of a CSV file (UTF-8, else GB18030: ``files.decode_text``'s rule), the
number of rows, the real last row of an XLSX sheet and which columns hold a value. A file with a row wider than
its header is refused then (``FileReadError``), before any row is imported.

A ``tablib.Dataset`` (the admin's preview, tests) is read through the same interface (``DatasetSource``), so the
fast path has one way to read rows. ``to_dataset()`` makes the whole table for django-import-export's own loop
(the preview's row-by-row diff, resources that override a per-row step): that path is for small files.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import tablib

from .files import CSV_ENCODINGS, NAMES, XLSX, FileReadError, _open_sheet, format_class

#: Bytes read at a time while a CSV file's encoding is checked.
BLOCK = 1 << 20


def _empty(value: Any) -> bool:
    return value is None or value == ""


class RowSource:
    """Rows of an import file: ``headers``, ``len()``, iteration from the start (each time), and the header
    tidied by the import (``use_columns``: names trimmed, empty unnamed columns dropped)."""

    headers: list[Any]
    streams = True

    def __init__(self) -> None:
        self._keep: list[int] | None = None
        self._filled: set[int] = set()
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def column_has_values(self, index: int) -> bool:
        """Whether any data row has a value in the column at ``index`` (of the header as read)."""
        return index in self._filled

    def use_columns(self, keep: list[int] | None, headers: list[str]) -> None:
        """Read only the columns at ``keep`` (all when None), named ``headers``."""
        self._keep = keep
        self.headers = headers

    def _raw_rows(self) -> Iterator[tuple]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple]:
        keep = self._keep
        if keep is None:
            yield from self._raw_rows()
        else:
            for values in self._raw_rows():
                yield tuple(values[i] for i in keep)

    def to_dataset(self) -> tablib.Dataset:
        dataset = tablib.Dataset(headers=list(self.headers))
        for values in self:
            dataset.append(values)
        return dataset


class DatasetSource(RowSource):
    """A ``tablib.Dataset`` read as a ``RowSource`` (tidying the header changes the dataset itself)."""

    streams = False

    def __init__(self, dataset: tablib.Dataset):
        super().__init__()
        self.dataset = dataset
        self.headers = list(dataset.headers or [])
        self._rows = len(dataset)
        width = len(self.headers)
        self._filled = {i for i in range(width) if any(not _empty(v) for v in dataset.get_col(i))}

    def use_columns(self, keep: list[int] | None, headers: list[str]) -> None:
        dataset = self.dataset
        if keep is not None:
            rows = [[row[i] for i in keep] for row in dataset]
            dataset.wipe()
            dataset.headers = headers
            dataset.extend(rows)
        else:
            dataset.headers = headers
        self.headers = list(headers)

    def _raw_rows(self) -> Iterator[tuple]:
        for values in self.dataset:
            yield tuple(values)

    def __iter__(self) -> Iterator[tuple]:
        return self._raw_rows()  # use_columns already changed the dataset

    def to_dataset(self) -> tablib.Dataset:
        return self.dataset


def as_source(dataset) -> RowSource:
    return dataset if isinstance(dataset, RowSource) else DatasetSource(dataset)


Opener = Callable[[], IO[bytes]]


def _opener(data: bytes | Path) -> Opener:
    if isinstance(data, Path):
        return lambda: open(data, "rb")  # noqa: SIM115 - closed by the caller
    return lambda: io.BytesIO(data)


def csv_encoding(open_binary: Opener) -> str:
    """The encoding a CSV file is read in: UTF-8 (with or without a byte-order mark), else GB18030; a file that is
    neither is refused naming the line where the encoding it reads furthest in stops making sense."""
    failures: list[tuple[int, int, str]] = []
    for encoding in CSV_ENCODINGS:
        decoder = codecs.getincrementaldecoder("utf-8-sig" if encoding == "utf-8" else encoding)()
        offset = lines = 0
        with open_binary() as handle:
            try:
                while block := handle.read(BLOCK):
                    pending = len(decoder.getstate()[0])
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        at = max(exc.start - pending, 0)
                        failures.append((offset + at, lines + block.count(b"\n", 0, at) + 1, encoding))
                        raise
                    offset += len(block)
                    lines += block.count(b"\n")
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                if not failures or failures[-1][2] != encoding:
                    failures.append((offset, lines + 1, encoding))
                del exc
                continue
        return "utf-8-sig" if encoding == "utf-8" else encoding
    _start, line, encoding = max(failures, key=lambda failure: failure[0])
    raise FileReadError(
        f"line {line} is not {NAMES[encoding]} text (an import file in CSV is UTF-8 or GB18030/GBK): correct that "
        "line or save the file again as CSV UTF-8."
    )


class CSVSource(RowSource):
    """A CSV file's rows as tablib reads them: the first row is the header, empty rows are skipped, a shorter
    row is padded with empty cells; a longer one refuses the file."""

    def __init__(self, data: bytes | Path):
        super().__init__()
        self._open = _opener(data)
        self.encoding = csv_encoding(self._open)
        self.headers = []
        with self._reader() as reader:
            for number, row in enumerate(reader):
                if number == 0:
                    self.headers = row
                    width = len(row)
                    continue
                if not row:
                    continue
                if len(row) > width:
                    raise FileReadError(
                        f"line {reader.line_num} has {len(row)} cells, more than the header's {width}."
                    )
                self._rows += 1
                for i, value in enumerate(row):
                    if value != "" and i not in self._filled:
                        self._filled.add(i)

    @contextmanager
    def _reader(self):
        with self._open() as handle:
            text = io.TextIOWrapper(handle, encoding=self.encoding, newline="")
            try:
                yield csv.reader(text)
            finally:
                text.detach()

    def _raw_rows(self) -> Iterator[tuple]:
        width = len(self.headers)
        with self._reader() as reader:
            next(reader, None)
            for row in reader:
                if not row:
                    continue
                if len(row) < width:
                    row += [""] * (width - len(row))
                yield tuple(row)


class XLSXSource(RowSource):
    """The first sheet of an XLSX workbook, streamed (``sheets.FirstSheet``), to its real last row: empty rows
    at the end are dropped and every row is padded to the widest, as ``files.XLSX`` reads it."""

    def __init__(self, data: bytes | Path):
        super().__init__()
        self._data = data
        last = width = 0
        header: list[Any] = []
        filled: set[int] = set()
        with self._sheet() as rows:
            for number, values in enumerate(rows):
                if number == 0:
                    header = list(values)
                width = max(width, len(values))
                if any(not _empty(v) for v in values):
                    last = number + 1
                    if number:
                        filled.update(i for i, v in enumerate(values) if not _empty(v))
        self._last = last  # rows of the sheet to read, the header included
        self._width = width
        self.headers = [*header, *[None] * (width - len(header))] if last else []
        self._rows = max(last - 1, 0)
        self._filled = filled

    @contextmanager
    def _sheet(self):
        with _open_sheet(self._data) as sheet:
            yield iter(sheet)

    def _raw_rows(self) -> Iterator[tuple]:
        width, last = self._width, self._last
        with self._sheet() as rows:
            for number, values in enumerate(rows):
                if number >= last:
                    break
                if number == 0:
                    continue
                if len(values) < width:
                    values = (*values, *[None] * (width - len(values)))
                yield tuple(values)


def open_rows(data: bytes | str | Path, format_name: str | None, file_name: str | None = None) -> RowSource:
    """The rows of a file given as bytes, as a path, or as the text of a CSV file; ``FileReadError`` when it
    cannot be read as its format."""
    fmt = format_class(format_name, file_name)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        return XLSXSource(data) if issubclass(fmt, XLSX) else CSVSource(data)
    except FileReadError:
        raise
    except Exception as exc:
        raise FileReadError(f"the file cannot be read as {fmt.__name__}: {exc}") from exc
