"""Every message of the Chinese catalog is translated: no empty and no fuzzy entry (gettext leaves both out, so
the page shows English), and each translation keeps the placeholders of its message."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


def test_every_message_of_the_source_is_in_the_catalog_and_translated(tmp_path):
    """Extract every message from the code and templates as they are (Django's makemessages, in a copy, so the
    real catalog is never written): a message the catalog lacks shows in English on a Chinese page."""
    assert shutil.which("xgettext"), "GNU gettext (xgettext) is needed to extract the messages"
    copy = tmp_path / "src"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in tracked:
        if not name or name.startswith(("tests/", "bench/", ".")):
            continue
        if name.endswith((".py", ".html", ".txt", ".po")) or name == "manage.py":
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "--no-obsolete", "--no-location"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    assert untranslated(copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po") == []
