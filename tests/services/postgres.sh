#!/usr/bin/env bash
# A private PostgreSQL for the tests: `start` prints one line to eval,
#   export MEDSYNTH_TEST_POSTGRES_URL=postgresql+psycopg://USER:PW@127.0.0.1:PORT/postgres
# (everything else goes to stderr); `stop` stops it and removes its folder.
# Debian's postgresql is installed when initdb is missing. Works as root (the server runs as the
# `postgres` user, which PostgreSQL requires) and without systemd. Listens on 127.0.0.1 only.
set -euo pipefail

DIR="${MEDSYNTH_PG_DIR:-/tmp/medsynth-pg}"
DATA="$DIR/data"
ROLE=medsynth

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

install_postgres() {
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL is not installed: run 'sudo apt-get install postgresql', then this again."
    exit 1
  fi
  log "installing Debian's postgresql..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

# Run a command as the server's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

print_url() {
  echo "export MEDSYNTH_TEST_POSTGRES_URL=postgresql+psycopg://$ROLE:$(cat "$DIR/password")@127.0.0.1:$(cat "$DIR/port")/postgres"
}

start() {
  local bin port pw
  bin="$(find_bin)" || { install_postgres; bin="$(find_bin)"; }
  if [ -f "$DIR/port" ] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "already running on port $(cat "$DIR/port")"
    print_url
    return 0
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  [ "$(id -u)" = "0" ] && chown postgres: "$DIR"
  chmod 700 "$DIR"
  pw="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  port="$(free_port)"
  # Local socket: trust for the owner (to create the role); TCP: password only.
  as_owner "$bin/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-locale >&2
  # The tests' data is throw-away: no fsync (each CREATE DATABASE is cheap), no autovacuum
  # (a vacuum worker in a test's database would hold up its DROP).
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 50 start -o \
    "-h 127.0.0.1 -p $port -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off -c max_connections=200" >&2
  as_owner "$bin/psql" -h "$DIR" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$pw'" \
    -c "GRANT pg_signal_backend TO $ROLE" >&2  # DROP DATABASE ... WITH (FORCE) after a test
  echo "$pw" >"$DIR/password"
  echo "$port" >"$DIR/port"
  log "running on 127.0.0.1:$port (data in $DATA)"
  print_url
}

stop() {
  local bin
  if bin="$(find_bin)" && [ -d "$DATA" ]; then
    as_owner "$bin/pg_ctl" -D "$DATA" stop -m fast >&2 || true
  fi
  rm -rf "$DIR"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
