#!/usr/bin/env bash
# Migrate, load the demo data, then run the web admin and the django-q2 cluster side by side.
# PORT (default 8000) moves the web admin when 8000 is taken; it always listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}
$PY manage.py migrate --noinput
$PY manage.py seed_demo

# The cluster runs in its own session and is stopped only through its main process: a SIGTERM sent to the
# whole process group (a supervisor, `kill -- -PGID`) would also hit its worker processes directly, and the
# main process then waits for ever on the dead sentinel. Stopped this way it drains its workers and exits.
setsid $PY manage.py qcluster &
CLUSTER=$!
WEB=""
stop() {
  trap - EXIT INT TERM
  kill -TERM "$CLUSTER" 2>/dev/null || true
  if [ -n "$WEB" ]; then kill -TERM "$WEB" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

echo
echo "Back office: http://127.0.0.1:${PORT}/admin/  (log in with a demo user printed above)"
echo "The django-q2 cluster runs in the background (pid $CLUSTER); Ctrl-C stops both."
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
WEB=$!
wait "$WEB"
