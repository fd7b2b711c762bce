#!/usr/bin/env bash
# Runs AtoiTalk locally: starts PostgreSQL and Redis when nothing answers
# (installing them, and the C toolchain the build needs, on a fresh Debian
# machine), creates the database, builds the release binary, then runs the
# scheduler and the API (which migrates on start) on http://localhost:8080.
# Media goes to ./var/media and emails are written to the log unless S3_* /
# SMTP_* are set in the environment or in .env (the environment wins).
#
# SIGTERM/SIGINT/SIGHUP to this script (Ctrl-C, `kill <pid>`, `timeout`, a
# supervisor) are passed on to both processes; the script waits for both to
# stop, and stops the other one too when either exits on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

step() { printf '==> %s\n' "$*" >&2; }

if [[ -f .env ]]; then
    step "reading .env"
    svc_read_dotenv .env
fi

export DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-5432}
export DB_USER=${DB_USER:-postgres} DB_PASSWORD=${DB_PASSWORD:-postgres} DB_NAME=${DB_NAME:-atoitalk}
export REDIS_HOST=${REDIS_HOST:-127.0.0.1} REDIS_PORT=${REDIS_PORT:-6379}

svc_ensure_toolchain
svc_ensure_postgres
svc_ensure_redis

if command -v psql >/dev/null 2>&1; then
    exists=$(PGPASSWORD=$DB_PASSWORD psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" || true)
    if [[ -z $exists ]]; then
        step "creating database $DB_NAME"
        PGPASSWORD=$DB_PASSWORD psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -qc "CREATE DATABASE \"$DB_NAME\""
    fi
fi

# Children run in the background and the script waits for them, because a
# signal that arrives while bash waits for a FOREGROUND child is handled only
# after that child exits: `kill <script>` would leave the API running.
children=()
stopping=
stop_children() {
    local pid
    for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
on_signal() {
    if [[ -z $stopping ]]; then step "$1 received; stopping ${children[*]:-}"; fi
    stopping=$1
    stop_children
}
for sig in INT TERM HUP; do trap "on_signal $sig" "$sig"; done
trap stop_children EXIT

# Waits until process $1 has exited (a trapped signal interrupts `wait`)
# and returns its status.
wait_for() {
    local rc
    while :; do
        rc=0
        wait "$1" || rc=$?
        kill -0 "$1" 2>/dev/null || return "$rc"
    done
}

# Runs "$@" like a foreground command, but stoppable by the signals above.
run() {
    "$@" &
    children=("$!")
    local rc=0
    wait_for "$!" || rc=$?
    children=()
    [[ -z $stopping ]] || exit "$rc"
    return "$rc"
}

step "building (release; the first build takes several minutes)"
run cargo build --release --locked
bin=${CARGO_TARGET_DIR:-target}/release/atoitalk

step "migrating"
run "$bin" migrate

step "starting the scheduler and the API on port ${APP_PORT:-8080} (Ctrl-C stops both)"
"$bin" scheduler &
scheduler=$!
children+=("$scheduler")
"$bin" serve &
api=$!
children+=("$api")
# A signal between a fork and the line above found no pid to pass on.
[[ -z $stopping ]] || stop_children

# Whichever comes first: a signal (already passed on by the trap) or one of
# the two exiting by itself, which stops the other.
first=0
wait -n "$api" "$scheduler" || first=$?
if [[ -z $stopping ]]; then
    step "a process exited by itself (status $first); stopping the other"
    stop_children
fi
api_rc=0 scheduler_rc=0
wait_for "$api" || api_rc=$?
wait_for "$scheduler" || scheduler_rc=$?
children=()
step "stopped (API status $api_rc, scheduler status $scheduler_rc)"
if [[ -n $stopping ]]; then
    exit "$api_rc"
fi
((first != 0)) && exit "$first"
exit 1
