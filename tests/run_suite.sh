#!/usr/bin/env bash
# `make test`: start what the tests need (a one-node SLURM, a private PostgreSQL), run the whole
# suite on SQLite, then every test that touches the database again on PostgreSQL, and stop both
# services whatever happened. Each service script installs Debian's packages when missing.
# Usage: tests/run_suite.sh PYTHON [pytest args...]   (extra args go to both passes)
set -uo pipefail
PY="$1"; shift
cd "$(dirname "$0")/.."

stop() {
  bash tests/services/slurm.sh stop >/dev/null 2>&1 || true
  bash tests/services/postgres.sh stop >/dev/null 2>&1 || true
}
trap stop EXIT

# A service that cannot start leaves its variable unset: its tests then fail and name the
# command to run (they are never skipped).
if line="$(bash tests/services/slurm.sh start)"; then eval "$line"; else
  echo "run_suite: the test SLURM did not start (see above)" >&2; fi
if line="$(bash tests/services/postgres.sh start)"; then eval "$line"; else
  echo "run_suite: the test PostgreSQL did not start (see above)" >&2; fi

echo "== the suite on SQLite"
"$PY" -m pytest -q "$@"
sqlite_rc=$?
echo "== the API and database tests on PostgreSQL"
MEDSYNTH_TEST_DATABASE=postgresql "$PY" -m pytest -q tests/app "$@"
pg_rc=$?
echo "run_suite: SQLite pass exit $sqlite_rc, PostgreSQL pass exit $pg_rc"
[ "$sqlite_rc" -eq 0 ] && [ "$pg_rc" -eq 0 ]
