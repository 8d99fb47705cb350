import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_manage("check", DEBUG="false", ALLOWED_HOSTS="backoffice.example")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_in_production_settings():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY="x7#k2!Lq9@vR4$wP8^zT1&mN6*bY3(cH5)jF0_sD-eG+uA=oI;lK:pQ/rS.tU,vW<xY>",
        ALLOWED_HOSTS="backoffice.example",
        PUBLIC_BASE_URL="https://backoffice.example",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_embedded_default_needs_no_variable():
    result = run_manage("check", DATABASE_URL="", REDIS_URL="")
    assert result.returncode == 0, result.stderr


def test_django_q_follows_its_documented_pitfalls_and_redis_url_switches_the_broker():
    from django.conf import settings

    q = settings.Q_CLUSTER
    assert q["timeout"] < q["retry"]  # else a task still running is handed to a second worker
    assert q["max_attempts"] >= 1 and q["catch_up"] is False
    result = run_manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings as s; print(s.Q_CLUSTER.get('redis'), s.Q_CLUSTER.get('orm'))",
        REDIS_URL="redis://127.0.0.1:6379/9",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["redis://127.0.0.1:6379/9", "None"]
    result = run_manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings as s; print(s.Q_CLUSTER.get('orm'))",
        REDIS_URL="",
    )
    assert result.stdout.split() == ["default"]
