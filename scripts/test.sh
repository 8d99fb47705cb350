#!/usr/bin/env bash
# The whole suite, twice: on SQLite (the embedded default) and on PostgreSQL with the Redis broker.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONDONTWRITEBYTECODE=1
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_TEST_URL=${REDIS_TEST_URL:-redis://127.0.0.1:6379/15}

bash scripts/ensure_services.sh
if [ -f scripts/ensure_browser.sh ]; then bash scripts/ensure_browser.sh; fi

echo "== SQLite =="
env -u DATABASE_URL -u REDIS_URL TEST_REDIS_URL="$REDIS_TEST_URL" $PY -m pytest -q "$@"

echo "== PostgreSQL =="
DATABASE_URL="$PG_URL" TEST_REDIS_URL="$REDIS_TEST_URL" REQUIRE_POSTGRES=1 $PY -m pytest -q "$@"
