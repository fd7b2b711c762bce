#!/usr/bin/env bash
# Fuzzes the running API with schemathesis (from PyPI) against the OpenAPI
# document it serves, as an authenticated user: no request may produce a
# 5xx or a response that violates the documented schema.
#
#   scripts/fuzz.sh                  # default budget (about 2,500 requests)
#   FUZZ_EXAMPLES=100 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '==> %s\n' "$*" >&2; }

scripts/services.sh postgres redis

if [[ ! -x .venv/bin/st ]]; then
    step "installing schemathesis into .venv (first run only)"
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/pip install -q 'schemathesis>=4,<5'
fi

step "building the server"
cargo build --locked --quiet
bin=target/debug/atoitalk

db=atoitalk_fuzz
port=${FUZZ_PORT:-18091}
secret="fuzz-$(date +%s)-$RANDOM"
export PGPASSWORD=${DB_PASSWORD:-postgres}
psql_admin() { psql -h "${DB_HOST:-127.0.0.1}" -p "${DB_PORT:-5432}" -U "${DB_USER:-postgres}" "$@"; }
psql_admin -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"

export APP_ENV=test APP_PORT=$port DB_HOST=${DB_HOST:-127.0.0.1} DB_NAME=$db DB_MIGRATE=true \
    REDIS_KEY_PREFIX="fuzz:$RANDOM:" JWT_SECRET=$secret OTP_SECRET=$secret RUST_LOG=${RUST_LOG:-warn} \
    MEDIA_LOCAL_DIR="$(mktemp -d)" SMTP_HOST= SMTP_ASYNC=false
log=target/fuzz-server.log
"$bin" serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "server did not start; see $log" >&2; exit 1; }

step "creating the fuzzing user"
uid=$(python3 -c 'import uuid; print(uuid.uuid4())')
psql_admin -d "$db" -qc "INSERT INTO users (id, email, username, full_name, role) VALUES ('$uid', 'fuzz@example.com', 'fuzzer', 'Fuzz User', 'admin')"
token=$(python3 - "$uid" "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
uid, secret = sys.argv[1], sys.argv[2].encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"user_id": uid, "iat": now, "iat_ms": now * 1000, "exp": now + 7200}).encode())
sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)

step "fuzzing (schemathesis; server log in $log)"
report=target/fuzz-report.txt
set +e
.venv/bin/st run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "${FUZZ_EXAMPLES:-40}" \
    --workers 4 \
    --exclude-path-regex '^/(ws|storage/.*|docs|asyncapi.yaml|openapi.json)$' \
    --exclude-path '/api/auth/logout' --exclude-path-regex '^/api/account' \
    --continue-on-failure 2>&1 | tee "$report"
rc=${PIPESTATUS[0]}
set -e
if grep -q "panicked" "$log"; then
    echo "error: the server panicked during fuzzing; see $log" >&2
    exit 1
fi
exit "$rc"
