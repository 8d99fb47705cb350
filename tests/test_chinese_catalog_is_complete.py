"""Every message of the Chinese catalog is translated: no empty and no fuzzy entry (gettext leaves both out, so
the page shows English), and each translation keeps the placeholders of its message."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")

sys.path.insert(0, str(ROOT / "scripts"))
try:
    from compile_messages import parse_po
finally:
    sys.path.pop(0)


def untranslated(path: Path) -> list[str]:
    """The messages of ``path`` that a reader would see in English, each with why."""
    problems = []
    for entry in parse_po(path):
        if not entry["id"]:
            continue  # the header
        strs = entry.get("strs", {})
        if entry.get("fuzzy"):
            problems.append(f"fuzzy: {entry['id']!r}")
        elif not strs or not all(strs.values()):
            problems.append(f"untranslated: {entry['id']!r}")
        else:
            wanted = set(PLACEHOLDER.findall(entry["id"] + entry.get("id_plural", "")))
            for text in strs.values():
                if set(PLACEHOLDER.findall(text)) != wanted:
                    problems.append(f"placeholders differ: {entry['id']!r} -> {text!r}")
    return problems


def test_it_finds_no_untranslated_or_fuzzy_message_in_the_chinese_catalog():
    assert untranslated(CATALOG) == []


def test_it_names_an_empty_a_fuzzy_and_a_placeholder_losing_translation(tmp_path):
    po = tmp_path / "django.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Timeline"\nmsgstr ""\n\n'
        '#, fuzzy\nmsgid "next call"\nmsgstr "本次通话"\n\n'
        '#, python-format\nmsgid "by %(who)s"\nmsgstr "经办人"\n\n'
        'msgid "Show"\nmsgstr "显示"\n',
        encoding="utf-8",
    )

    assert untranslated(po) == [
        "untranslated: 'Timeline'",
        "fuzzy: 'next call'",
        "placeholders differ: 'by %(who)s' -> '经办人'",
    ]
