#!/usr/bin/env python3
"""Compile locale/*/LC_MESSAGES/*.po into .mo files with the standard library only (no gettext needed).

Usage: python scripts/compile_messages.py [--check]

The .mo files are committed, so running the product never needs gettext. ``--check`` writes nothing and
exits 1 naming each .mo that is missing or differs from what its .po compiles to. Fuzzy entries and empty
translations are left out, as msgfmt does; plural forms and message contexts are kept.
"""

from __future__ import annotations

import argparse
import ast
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "locale"


def _unquote(token: str, path: Path, number: int) -> str:
    token = token.strip()
    if not (token.startswith('"') and token.endswith('"')):
        raise ValueError(f"{path.name}:{number}: expected a quoted string, got {token!r}")
    # A .po string is a C string literal; Python's literal syntax reads the same escapes.
    return ast.literal_eval(token)


def parse_po(path: Path) -> list[dict]:
    """The entries of a .po file: dicts with ctxt, id, id_plural, strs (index -> text) and fuzzy."""
    entries: list[dict] = []
    entry: dict | None = None
    target: tuple[str, int | None] | None = None

    def finish():
        nonlocal entry
        if entry is not None and "id" in entry:
            entries.append(entry)
        entry = None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            finish()
            target = None
            continue
        if line.startswith("#"):
            if entry is not None and "id" in entry and "strs" in entry:
                finish()
            if line.startswith("#,") and "fuzzy" in line:
                entry = entry or {}
                entry["fuzzy"] = True
            continue
        if line.startswith('"'):
            if entry is None or target is None:
                raise ValueError(f"{path.name}:{number}: a continuation line outside an entry")
            key, index = target
            if key == "strs":
                entry["strs"][index] += _unquote(line, path, number)
            else:
                entry[key] += _unquote(line, path, number)
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgctxt":
            if entry is not None and "strs" in entry:
                finish()
            entry = entry or {}
            entry["ctxt"] = _unquote(rest, path, number)
            target = ("ctxt", None)
        elif keyword == "msgid":
            if entry is not None and "strs" in entry:
                finish()
            entry = entry or {}
            entry["id"] = _unquote(rest, path, number)
            target = ("id", None)
        elif keyword == "msgid_plural":
            entry["id_plural"] = _unquote(rest, path, number)
            target = ("id_plural", None)
        elif keyword.startswith("msgstr"):
            index = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
            entry.setdefault("strs", {})[index] = _unquote(rest, path, number)
            target = ("strs", index)
        else:
            raise ValueError(f"{path.name}:{number}: unknown keyword {keyword!r}")
    finish()
    return entries


def compile_entries(entries: list[dict]) -> bytes:
    """The GNU .mo bytes of ``entries`` (little-endian, no hash table)."""
    messages: dict[bytes, bytes] = {}
    for e in entries:
        strs = e.get("strs", {})
        is_header = e["id"] == "" and "ctxt" not in e
        if e.get("fuzzy") and not is_header:
            continue
        if "id_plural" in e:
            forms = [strs[i] for i in sorted(strs)]
            if not any(forms):
                continue
            key = e["id"] + "\0" + e["id_plural"]
            value = "\0".join(forms)
        else:
            value = strs.get(0, "")
            if not value:
                continue
            key = e["id"]
        if "ctxt" in e:
            key = e["ctxt"] + "\x04" + key
        messages[key.encode("utf-8")] = value.encode("utf-8")
    keys = sorted(messages)
    header_size = 7 * 4
    count = len(keys)
    originals_offset = header_size
    translations_offset = originals_offset + count * 8
    data_offset = translations_offset + count * 8
    originals, translations, blob = [], [], b""
    for key in keys:
        originals.append((len(key), data_offset + len(blob)))
        blob += key + b"\0"
    for key in keys:
        value = messages[key]
        translations.append((len(value), data_offset + len(blob)))
        blob += value + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, count, originals_offset, translations_offset, 0, data_offset)
    for length, offset in originals:
        out += struct.pack("<2I", length, offset)
    for length, offset in translations:
        out += struct.pack("<2I", length, offset)
    return out + blob


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a .mo is stale")
    args = parser.parse_args(argv)
    stale = []
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        compiled = compile_entries(parse_po(po))
        mo = po.with_suffix(".mo")
        if args.check:
            if not mo.exists() or mo.read_bytes() != compiled:
                stale.append(str(mo.relative_to(ROOT)))
            continue
        mo.write_bytes(compiled)
        print(f"compiled {po.relative_to(ROOT)}")
    if stale:
        print("stale or missing (run scripts/compile_messages.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
