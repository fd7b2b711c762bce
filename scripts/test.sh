#!/usr/bin/env bash
# Runs the whole test suite: starts PostgreSQL, Redis and the S3 test server
# when they are missing (installing them, and the C toolchain the build
# needs, on a fresh Debian machine), then runs unit and integration tests in
# parallel.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh foundation::    # only tests whose name matches
#   TEST_PG_REPLICA=1 scripts/test.sh   # everything against a throw-away
#                                   # primary + streaming standby (see below)
#
# Every run also starts a throw-away Redis Cluster (3 masters + 3 replicas on
# free loopback ports, scripts/redis-cluster.sh) and, after the suite, runs
# the Redis-heavy modules (or the given filter) a second time with all of
# Redis on that cluster (TEST_REDIS_CLUSTER=1). TEST_REDIS_CLUSTER_NODES set
# beforehand names an existing cluster instead (it needs replicas: one test
# fails a master over).
#
# The tests use the PostgreSQL and Redis that scripts/services.sh (and
# scripts/run.sh) use: TEST_DB_HOST/PORT/USER/PASSWORD and
# TEST_REDIS_HOST/PORT default to DB_HOST/PORT/USER/PASSWORD and
# REDIS_HOST/PORT (from the environment, else from .env), else to
# 127.0.0.1:5432 postgres/postgres and 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

step() { printf '\n==> %s\n' "$*" >&2; }

svc_read_dotenv .env DB_HOST DB_PORT DB_USER DB_PASSWORD REDIS_HOST REDIS_PORT
export TEST_DB_HOST=${TEST_DB_HOST:-${DB_HOST:-127.0.0.1}} TEST_DB_PORT=${TEST_DB_PORT:-${DB_PORT:-5432}}
export TEST_DB_USER=${TEST_DB_USER:-${DB_USER:-postgres}}
export TEST_DB_PASSWORD=${TEST_DB_PASSWORD:-${DB_PASSWORD:-postgres}}
export TEST_REDIS_HOST=${TEST_REDIS_HOST:-${REDIS_HOST:-127.0.0.1}}
export TEST_REDIS_PORT=${TEST_REDIS_PORT:-${REDIS_PORT:-6379}}
export TEST_S3_ENDPOINT=${TEST_S3_ENDPOINT:-http://127.0.0.1:${S3_TEST_PORT:-9090}}

step "checking the toolchain, PostgreSQL ($TEST_DB_HOST:$TEST_DB_PORT), Redis ($TEST_REDIS_HOST:$TEST_REDIS_PORT) and the S3 test server"
svc_ensure_toolchain
DB_HOST=$TEST_DB_HOST DB_PORT=$TEST_DB_PORT REDIS_HOST=$TEST_REDIS_HOST REDIS_PORT=$TEST_REDIS_PORT \
    svc_ensure_all s3

# Each test drops its own database when it ends; a run that was killed
# leaves some behind. Remove those (and templates, which the tests remake)
# only once they are hours old: other runs on this server may be going on.
max_age=${TEST_DB_MAX_AGE_HOURS:-3}
if command -v psql >/dev/null 2>&1; then
    PGPASSWORD=$TEST_DB_PASSWORD psql -h "$TEST_DB_HOST" -p "$TEST_DB_PORT" -U "$TEST_DB_USER" -d postgres \
        -qAtX -v ON_ERROR_STOP=1 -v max_age="$max_age" >/dev/null 2>&1 <<'SQL' \
        || printf 'note: could not remove old test databases (needs superuser); continuing\n' >&2
SELECT CASE WHEN datistemplate THEN format('ALTER DATABASE %I IS_TEMPLATE false', datname) END,
       format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
  FROM pg_database
 WHERE (datname LIKE 'atoitalk\_t\_%' OR datname LIKE 'atoitalk\_tpl\_%')
   -- PG_VERSION is written when a database is created and never again
   AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification
       < now() - make_interval(hours => :max_age)
\gexec
SQL
fi

# TEST_PG_REPLICA=1: make a PostgreSQL primary and a streaming standby of it
# on free loopback ports (scripts/pg-replica.sh; the machine's own cluster is
# not touched) and run the whole suite against that primary, with the
# standby as TEST_DB_READ_PORT so the replica:: tests run instead of being
# skipped. Both are removed when the script exits.
cleanup() {
    if declare -F pgr_stop >/dev/null; then pgr_stop; fi
    if declare -F rcl_stop >/dev/null; then rcl_stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # a signal must still run the EXIT trap
if [[ ${TEST_PG_REPLICA:-0} == 1 ]]; then
    . scripts/pg-replica.sh
    pgr_start || { pgr_err "could not make the primary/standby pair"; exit 1; }
    export TEST_DB_HOST=127.0.0.1 TEST_DB_PORT=$PGR_PRIMARY_PORT
    export TEST_DB_READ_HOST=127.0.0.1 TEST_DB_READ_PORT=$PGR_STANDBY_PORT
fi

if [[ -z ${TEST_REDIS_CLUSTER_NODES:-} ]]; then
    step "starting a Redis Cluster (3 masters + 3 replicas) on loopback"
    if ! command -v redis-server >/dev/null 2>&1; then
        _svc_apt_install redis-server || { svc_err "the cluster tests need redis-server"; exit 1; }
    fi
    . scripts/redis-cluster.sh
    # A port found free can be taken before its node binds it (seen once
    # after a benchmark's many loopback sockets): one more try on others.
    rcl_start || { rcl_stop; rcl_log "retrying on other ports"; rcl_start; } \
        || { rcl_err "could not make the Redis Cluster"; exit 1; }
fi
# Here a test that needs the cluster fails instead of skipping.
export TEST_REQUIRE_REDIS_CLUSTER=1

# Tests are I/O-bound (HTTP, WS, DB), so run many at once even on 2 cores.
threads=${TEST_THREADS:-8}

step "building and running the tests (${threads} at a time)"
start=$SECONDS
cargo test --locked --all-targets -- --test-threads="$threads" "$@"
step "all tests passed in $((SECONDS - start)) s"

# The modules that exercise every Redis use (sessions, revocation, OTPs,
# throttles, rate limits, presence, typing, the bus, the resume store) once
# more, on the cluster; users:: and search:: check the per-user buckets of
# authenticated routes (counted after authentication on a cluster), and
# send_account:: that a refused sender hears the same on both paths.
cluster_filter=("$@")
((${#cluster_filter[@]})) || cluster_filter=(realtime:: resume:: auth:: presence:: sessions::
    account_abuse:: two_factor:: ws_limits:: events:: users:: search:: send_account::)
step "the same on the Redis Cluster: ${cluster_filter[*]}"
start=$SECONDS
TEST_REDIS_CLUSTER=1 cargo test --locked --test it -- --test-threads="$threads" "${cluster_filter[@]}"
step "cluster pass passed in $((SECONDS - start)) s"
