#!/usr/bin/env bash
# Runs the whole test suite: starts PostgreSQL, Redis and the S3 test server
# when they are missing (installing them, and the C toolchain the build
# needs, on a fresh Debian machine), then runs unit and integration tests in
# parallel.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh foundation::    # only tests whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "checking the toolchain, PostgreSQL, Redis and the S3 test server"
scripts/services.sh toolchain
scripts/services.sh s3

# Leftover databases of earlier runs (each test makes its own).
if command -v psql >/dev/null 2>&1; then
    step "dropping test databases left by earlier runs"
    PGPASSWORD=${TEST_DB_PASSWORD:-postgres} psql -h "${TEST_DB_HOST:-127.0.0.1}" -p "${TEST_DB_PORT:-5432}" \
        -U "${TEST_DB_USER:-postgres}" -d postgres -Atq \
        -c "SELECT datname FROM pg_database WHERE datname LIKE 'atoitalk\_t\_%'" |
        while read -r db; do
            PGPASSWORD=${TEST_DB_PASSWORD:-postgres} psql -h "${TEST_DB_HOST:-127.0.0.1}" -p "${TEST_DB_PORT:-5432}" \
                -U "${TEST_DB_USER:-postgres}" -d postgres -q -c "DROP DATABASE IF EXISTS \"$db\"" || true
        done
fi

export TEST_S3_ENDPOINT=${TEST_S3_ENDPOINT:-http://127.0.0.1:${S3_TEST_PORT:-9090}}
# Tests are I/O-bound (HTTP, WS, DB), so run many at once even on 2 cores.
threads=${TEST_THREADS:-8}

step "building and running the tests (${threads} at a time)"
start=$SECONDS
cargo test --locked --all-targets -- --test-threads="$threads" "$@"
step "all tests passed in $((SECONDS - start)) s"
