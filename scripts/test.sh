#!/usr/bin/env bash
# The import layers, then the whole suite twice: on SQLite (the embedded default) and on PostgreSQL with the
# Redis broker.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONDONTWRITEBYTECODE=1
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_TEST_URL=${REDIS_TEST_URL:-redis://127.0.0.1:6379/15}

bash scripts/ensure_services.sh
if [ -f scripts/ensure_browser.sh ]; then bash scripts/ensure_browser.sh; fi

# The layers of ARCHITECTURE.md (import-linter contracts in pyproject.toml): a violation fails the command.
echo "== Import layers =="
.venv/bin/lint-imports

# The SQLite pass runs with the process clock pinned to 14:30 UTC: 22:30 in Shanghai, 06:30 (07:30 in summer
# time) in Los Angeles, night in both, so a test that depends on the hour it runs at fails every run.
echo "== SQLite (clock pinned to ${TEST_CLOCK:=14:30} UTC) =="
env -u DATABASE_URL -u REDIS_URL TEST_CLOCK="$TEST_CLOCK" TEST_REDIS_URL="$REDIS_TEST_URL" $PY -m pytest -q "$@"

# The PostgreSQL pass runs at 01:30 UTC: 09:30 in Shanghai, 17:30 (18:30 in summer time) the day before in Los
# Angeles, inside the contact window in both. Between the two passes every test that both run sees a night and a
# day, whatever hour CI starts at.
echo "== PostgreSQL (clock pinned to ${TEST_CLOCK_POSTGRES:=01:30} UTC) =="
DATABASE_URL="$PG_URL" TEST_CLOCK="$TEST_CLOCK_POSTGRES" TEST_REDIS_URL="$REDIS_TEST_URL" REQUIRE_POSTGRES=1 $PY -m pytest -q "$@"
