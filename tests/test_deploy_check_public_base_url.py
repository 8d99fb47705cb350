"""``manage.py check --deploy`` warns (notifications.W001) when production settings leave PUBLIC_BASE_URL empty:
every email's unsubscribe link would have no host."""

from __future__ import annotations

from notifications.checks import PUBLIC_BASE_URL_MISSING, check_public_base_url
from tests.test_settings import run_manage

SECRET = "x7#k2!Lq9@vR4$wP8^zT1&mN6*bY3(cH5)jF0_sD-eG+uA=oI;lK:pQ/rS.tU,vW<xY>"


def test_it_warns_on_deploy_when_public_base_url_is_empty():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="backoffice.example",
        PUBLIC_BASE_URL="",
    )
    assert result.returncode != 0
    assert PUBLIC_BASE_URL_MISSING in result.stderr
    assert "unsubscribe link" in result.stderr


def test_it_is_quiet_once_public_base_url_is_set(settings):
    settings.PUBLIC_BASE_URL = "https://backoffice.example"
    assert check_public_base_url(None) == []
    settings.PUBLIC_BASE_URL = "  "
    assert [w.id for w in check_public_base_url(None)] == [PUBLIC_BASE_URL_MISSING]


def test_a_plain_check_does_not_ask_for_it():
    result = run_manage("check", DEBUG="true", PUBLIC_BASE_URL="")
    assert result.returncode == 0, result.stderr
    assert PUBLIC_BASE_URL_MISSING not in result.stdout + result.stderr
