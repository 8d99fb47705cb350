"""What the fast path keeps while it imports a file a chunk of rows at a time, in bounded memory.

- ``ChunkRows``: one chunk's rows, as a resource's ``preload_chunk`` sees them (its references are loaded for
  the chunk, not for the whole file).
- ``RowLedger``: a few bytes per row of the whole file (its outcome and the hash of its key), enough to count
  the rows and to find, after the last chunk, a key that repeats a row of an earlier chunk.
- ``Spill``: on SQLite, the checked rows of each chunk, written to a temporary file until the file has been
  read without error and its one short write transaction opens (``FastPathMixin.import_then_write``).
"""

from __future__ import annotations

import pickle
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from import_export.results import RowResult


def batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


class ChunkRows:
    """The rows of one chunk: ``len()``, and ``column(name)``, the cells of one column."""

    __slots__ = ("index", "rows")

    def __init__(self, headers: list[str], rows: list[tuple[int, tuple]]):
        self.index = {name: i for i, name in enumerate(headers)}
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def column(self, name: str) -> list[Any]:
        i = self.index[name]
        return [values[i] for _number, values in self.rows]


#: A row's outcome in the ledger (low bits), whether it has a key (``KEYED``) and whether its key was already
#: reported as repeating a row of its own chunk (``REPEAT_REPORTED``).
TYPES = (
    None,
    RowResult.IMPORT_TYPE_NEW,
    RowResult.IMPORT_TYPE_UPDATE,
    RowResult.IMPORT_TYPE_SKIP,
    RowResult.IMPORT_TYPE_INVALID,
    RowResult.IMPORT_TYPE_ERROR,
    RowResult.IMPORT_TYPE_DELETE,
)
CODES = {name: code for code, name in enumerate(TYPES) if name}
KEYED = 0x80
REPEAT_REPORTED = 0x40


class RowLedger:
    """Every row of the file in 9 bytes: its outcome and the 64-bit hash of its key (row ``n`` at ``n - 1``)."""

    def __init__(self) -> None:
        self.hashes = array("q")
        self.flags = bytearray()

    def add(self, key: tuple | None, import_type: str | None, repeat_reported: bool) -> None:
        self.hashes.append(hash(key) if key is not None else 0)
        self.flags.append(
            CODES.get(import_type, 0)
            | (KEYED if key is not None else 0)
            | (REPEAT_REPORTED * repeat_reported)
        )

    def import_type(self, number: int) -> str | None:
        return TYPES[self.flags[number - 1] & 0x0F]

    def repeated_hashes(self) -> set[int]:
        """The key hashes more than one row has (the same key, or rarely two keys of one hash)."""
        keyed = sorted(h for h, flags in zip(self.hashes, self.flags) if flags & KEYED)
        return {keyed[i] for i in range(1, len(keyed)) if keyed[i] == keyed[i - 1]}

    def may_repeat(self, number: int, hashes: set[int]) -> bool:
        return bool(self.flags[number - 1] & KEYED) and self.hashes[number - 1] in hashes

    def reported(self, number: int) -> bool:
        return bool(self.flags[number - 1] & REPEAT_REPORTED)


class Spill:
    """Checked rows waiting for their write transaction, in a temporary file: each chunk's new and changed
    objects as their concrete field values, made objects again when read (``chunks()``)."""

    def __init__(self, model, alias: str):
        self.model = model
        self.alias = alias
        self.attnames = [f.attname for f in model._meta.concrete_fields]
        self.file = tempfile.TemporaryFile()
        self.count = 0

    def add(self, creates: list, updates: list) -> None:
        attnames = self.attnames
        rows = (
            [tuple(getattr(obj, a) for a in attnames) for obj in creates],
            [tuple(getattr(obj, a) for a in attnames) for obj in updates],
        )
        pickle.dump(rows, self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def chunks(self) -> Iterator[tuple[list, list]]:
        model, alias = self.model, self.alias
        self.file.seek(0)
        for _ in range(self.count):
            creates, updates = pickle.load(self.file)  # noqa: S301 - written by this process just before
            changed = []
            for values in updates:
                obj = model(*values)
                obj._state.adding = False
                obj._state.db = alias
                changed.append(obj)
            yield [model(*values) for values in creates], changed

    def close(self) -> None:
        self.file.close()
