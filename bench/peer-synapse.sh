#!/usr/bin/env bash
# Sets up Matrix Synapse as the peer for `atoitalk-bench peer` (issue 21):
# a virtualenv with matrix-synapse[postgres] from PyPI, a homeserver.yaml on
# loopback using the bench's PostgreSQL (its own database, C collation as
# Synapse requires), rate limits raised far above what the bench sends, and
# a presence-off overlay. Run by hand; not part of CI.
#
#   bench/peer-synapse.sh [DIR]        # default DIR: /tmp/atoitalk-peer-synapse
#   target/release/atoitalk-bench peer --synapse-dir DIR
#
# Env: SYNAPSE_VERSION (default: newest on PyPI), BENCH_DB_HOST/PORT/USER/
# PASSWORD as for the bench, SYNAPSE_PORT (default 18448).
set -euo pipefail

DIR=${1:-/tmp/atoitalk-peer-synapse}
PORT=${SYNAPSE_PORT:-18448}
PGHOST=${BENCH_DB_HOST:-127.0.0.1}
PGPORT=${BENCH_DB_PORT:-5432}
PGUSER=${BENCH_DB_USER:-postgres}
export PGPASSWORD=${BENCH_DB_PASSWORD:-postgres}
SPEC="matrix-synapse[postgres]${SYNAPSE_VERSION:+==$SYNAPSE_VERSION}"

mkdir -p "$DIR/media"
if [ ! -x "$DIR/venv/bin/python" ]; then
    python3 -m venv "$DIR/venv"
fi
# Every dependency comes as a wheel on CPython 3.11 except psycopg2, which
# PyPI only ships as source (it builds against libpq-dev / pg_config).
"$DIR/venv/bin/pip" install -q --upgrade pip
"$DIR/venv/bin/pip" install -q --only-binary=:all: --no-binary=psycopg2 "$SPEC"
VERSION=$("$DIR/venv/bin/python" -c 'import synapse; print(synapse.__version__)')

# A fresh database: the users and rooms a previous bench run saved are gone.
rm -f "$DIR/state.json"
psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -v ON_ERROR_STOP=1 -q <<'SQL'
DROP DATABASE IF EXISTS synapse_bench WITH (FORCE);
CREATE DATABASE synapse_bench ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL

if [ ! -f "$DIR/bench.signing.key" ]; then
    "$DIR/venv/bin/python" -m synapse.app.homeserver --server-name bench.local \
        --config-path "$DIR/keys.yaml" --generate-config --report-stats=no \
        --data-directory "$DIR" >/dev/null
    mv "$DIR"/bench.local.signing.key "$DIR/bench.signing.key"
    rm -f "$DIR/keys.yaml" "$DIR"/bench.local.log.config
fi

# Rate limits: every limiter the bench can touch, far above its rates.
big='{per_second: 1000000, burst_count: 1000000}'
cat >"$DIR/homeserver.yaml" <<YAML
server_name: bench.local
pid_file: $DIR/homeserver.pid
public_baseurl: http://127.0.0.1:$PORT/
report_stats: false
signing_key_path: $DIR/bench.signing.key
media_store_path: $DIR/media
log_config: $DIR/log.yaml
listeners:
  - port: $PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: psycopg2
  args:
    user: $PGUSER
    password: $PGPASSWORD
    dbname: synapse_bench
    host: $PGHOST
    port: $PGPORT
    cp_min: 5
    cp_max: 10
enable_registration: true
enable_registration_without_verification: true
bcrypt_rounds: 4
macaroon_secret_key: bench-macaroon-secret-not-for-production
form_secret: bench-form-secret-not-for-production
registration_shared_secret: bench-registration-secret-not-for-production
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
url_preview_enabled: false
enable_metrics: false
presence:
  enabled: true
rc_message: $big
rc_registration: $big
rc_registration_token_validity: $big
rc_login:
  address: $big
  account: $big
  failed_attempts: $big
rc_joins:
  local: $big
  remote: $big
rc_joins_per_room: $big
rc_invites:
  per_room: $big
  per_user: $big
  per_issuer: $big
rc_3pid_validation: $big
rc_admin_redaction: $big
rc_room_creation: $big
rc_presence:
  per_user: $big
rc_delayed_event_mgmt: $big
rc_reports: $big
rc_media_create: $big
YAML

cat >"$DIR/presence-off.yaml" <<YAML
presence:
  enabled: false
YAML

cat >"$DIR/log.yaml" <<YAML
version: 1
formatters:
  precise:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
YAML

echo "Synapse $VERSION ready in $DIR (port $PORT, database synapse_bench)"
