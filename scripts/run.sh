#!/usr/bin/env bash
# Migrate, load the demo data, then run the web admin and the django-q2 cluster side by side.
# PORT (default 8000) moves the web admin when 8000 is taken; it always listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}
$PY manage.py migrate --noinput
$PY manage.py seed_demo
$PY manage.py qcluster &
CLUSTER=$!
trap 'kill $CLUSTER 2>/dev/null; wait $CLUSTER 2>/dev/null' EXIT INT TERM
echo
echo "Back office: http://127.0.0.1:${PORT}/admin/  (log in with a demo user printed above)"
echo "The django-q2 cluster runs in the background (pid $CLUSTER); Ctrl-C stops both."
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload
