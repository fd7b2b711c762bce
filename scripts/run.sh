#!/usr/bin/env bash
# Runs AtoiTalk locally: starts PostgreSQL and Redis when nothing answers
# (installing them, and the C toolchain the build needs, on a fresh Debian
# machine), creates the database, builds
# the release binary, then runs the scheduler in the background and the API
# (which migrates on start) in the foreground on http://localhost:8080.
# Media goes to ./var/media and emails are written to the log unless S3_* /
# SMTP_* are set in the environment or in .env (the environment wins).
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

step "building (release; the first build takes a few minutes)"
cargo build --release --locked
bin=${CARGO_TARGET_DIR:-target}/release/atoitalk

step "migrating"
"$bin" migrate

step "starting the scheduler in the background"
"$bin" scheduler &
scheduler=$!
trap 'kill "$scheduler" 2>/dev/null || true; wait "$scheduler" 2>/dev/null || true' EXIT INT TERM

step "starting the API on port ${APP_PORT:-8080} (Ctrl-C stops both)"
"$bin" serve
