import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.utils import translation
from django.utils.functional import Promise

from notifications.choices import Channel, Kind
from notifications.models import NotificationLog
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def boss(db, client):
    client.force_login(make_user("boss", is_superuser=True))
    return client


def test_the_admin_follows_a_chinese_browser(boss):
    html = boss.get("/admin/", HTTP_ACCEPT_LANGUAGE="zh-hans,zh;q=0.9,en;q=0.5").content.decode()

    assert '<html lang="zh-hans"' in html
    assert "按逾期天数分段的逾期资产" in html  # the dashboard's own heading
    assert "信用等级" in html  # our model's verbose name in the app list
    assert "Overdue book by days past due" not in html


def test_the_admin_stays_in_english_for_an_english_browser(boss):
    html = boss.get("/admin/", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9").content.decode()

    assert '<html lang="en"' in html and "Overdue book by days past due" in html and "信用等级" not in html


@pytest.mark.parametrize("choices", [NotificationLog.Status, NotificationLog.Reason, Channel, Kind])
def test_every_status_reason_channel_and_kind_has_a_chinese_label(choices):
    with translation.override("en"):
        english = {m.value: str(m.label) for m in choices if m.value}
    with translation.override("zh-hans"):
        missing = [value for value, label in english.items() if str(choices(value).label) == label]
    assert missing == []


def test_reason_codes_read_as_plain_chinese():
    with translation.override("zh-hans"):
        assert str(NotificationLog.Reason.FREQUENCY_CAP.label) == "已达每周联系上限"
        assert str(NotificationLog.Status.SUPPRESSED.label) == "已拦截"


@pytest.mark.parametrize("label", ["loans", "notifications", "collections"])
def test_every_model_name_of_the_product_is_translated(label):
    untranslated = []
    with translation.override("zh-hans"):
        for model in apps.get_app_config(label).get_models():
            # Names Django made up from the class name (no Meta.verbose_name) cannot be translated.
            for attr in ("verbose_name", "verbose_name_plural"):
                name = model._meta.original_attrs.get(attr)
                if isinstance(name, Promise) and str(name).isascii():
                    untranslated.append(str(name))
    assert untranslated == []


def test_the_committed_mo_files_match_their_po_files():
    result = subprocess.run(
        [sys.executable, "scripts/compile_messages.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_compiler_keeps_plurals_and_contexts_and_skips_fuzzy(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from compile_messages import compile_entries, parse_po
    finally:
        sys.path.pop(0)
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Plural-Forms: nplurals=1; plural=0;\\n"\n\n'
        'msgctxt "month"\nmsgid "May"\nmsgstr "五月"\n\n'
        '#, fuzzy\nmsgid "Maybe"\nmsgstr "也许"\n\n'
        'msgid "%(n)s row"\nmsgid_plural "%(n)s rows"\nmsgstr[0] "%(n)s 行"\n\n'
        'msgid "a \\"quoted\\"\\n"\n"line"\nmsgstr "引号"\n',
        encoding="utf-8",
    )
    mo = tmp_path / "x.mo"
    mo.write_bytes(compile_entries(parse_po(po)))

    import gettext

    with mo.open("rb") as fh:
        catalog = gettext.GNUTranslations(fh)
    assert catalog.pgettext("month", "May") == "五月"
    assert catalog.gettext("Maybe") == "Maybe"
    assert catalog.ngettext("%(n)s row", "%(n)s rows", 5) == "%(n)s 行"
    assert catalog.gettext('a "quoted"\nline') == "引号"
