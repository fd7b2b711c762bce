#!/usr/bin/env bash
# Fuzzes the running API with schemathesis (from PyPI) against the OpenAPI
# document it serves, as an authenticated user: no request may produce a
# 5xx or a response that violates the documented schema.
#
#   scripts/fuzz.sh                  # default budget (about 2,500 requests)
#   FUZZ_EXAMPLES=100 scripts/fuzz.sh
#   FUZZ_EXCLUDE_PATH_REGEX='^/api/chats/group' scripts/fuzz.sh
#   FUZZ_EXTRA_ARGS='--seed 42 --max-failures 5' scripts/fuzz.sh
#   FUZZ_WORKERS=4 scripts/fuzz.sh   # default 1: with several workers,
#       Python 3.11's AST validator is not thread-safe and hypothesis fails
#       at random with "AST constructor recursion depth mismatch"
#
# The binary is taken from ${CARGO_TARGET_DIR:-target}/debug, logs and the
# report go to ${CARGO_TARGET_DIR:-target}/fuzz-*. FUZZ_EXCLUDE_PATH_REGEX is
# OR-ed into the one exclusion regex (schemathesis keeps only the last
# `--exclude-path-regex` given); FUZZ_EXTRA_ARGS is split like shell words
# and appended to `st run`.
#
# The fuzzing user is an admin WITH a random password, so the account
# endpoints can be fuzzed too: changing the password or email or deleting
# the account needs that password or an emailed code, which generated data
# never has. Only logout (which would revoke the token) is left out.
# Before fuzzing, scripts/fuzz_seed.py creates chats, messages, media and
# reports through the API and hands their ids to schemathesis (dictionaries
# bound to the id parameters and body fields), so requests reach real rows.
# Google sign-in is configured with endpoints on a closed local port, so it
# fails as a client error without leaving the machine. While schemathesis
# runs, scripts/fuzz_unlimit.py clears the server's rate-limit counters ten
# times a second, so requests reach the handlers instead of ending as
# (documented) 429s after the first couple of hundred; schemathesis sends at
# most FUZZ_RATE_LIMIT (default 60/s), so even the 10-per-minute auth bucket
# rarely fills between two sweeps.
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
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
bin=$target_dir/debug/atoitalk

db=atoitalk_fuzz
port=${FUZZ_PORT:-18091}
secret="fuzz-$(date +%s)-$RANDOM"
export PGPASSWORD=${DB_PASSWORD:-postgres}
psql_admin() { psql -h "${DB_HOST:-127.0.0.1}" -p "${DB_PORT:-5432}" -U "${DB_USER:-postgres}" "$@"; }
psql_admin -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"

redis_prefix="fuzz:$RANDOM:"
# A Redis database of its own keeps the counter sweep below cheap however
# many keys other test runs leave in database 0.
redis_db=${FUZZ_REDIS_DB:-7}
export REDIS_DB=$redis_db
export APP_ENV=test APP_PORT=$port DB_HOST=${DB_HOST:-127.0.0.1} DB_NAME=$db DB_MIGRATE=true \
    REDIS_KEY_PREFIX="$redis_prefix" JWT_SECRET=$secret OTP_SECRET=$secret RUST_LOG=${RUST_LOG:-warn} \
    MEDIA_LOCAL_DIR="$(mktemp -d)" SMTP_HOST= SMTP_ASYNC=false \
    GOOGLE_CLIENT_ID=fuzz-client GOOGLE_CLIENT_SECRET=fuzz-secret \
    GOOGLE_REDIRECT_URL=http://127.0.0.1:9/callback GOOGLE_TOKEN_URL=http://127.0.0.1:9/token \
    GOOGLE_USERINFO_URL=http://127.0.0.1:9/userinfo
log=$target_dir/fuzz-server.log
"$bin" serve >"$log" 2>&1 &
server=$!
limiter_reset=
cleanup() {
    if [[ -n $limiter_reset ]]; then
        kill "$limiter_reset" 2>/dev/null || true
        wait "$limiter_reset" 2>/dev/null || true
    fi
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "server did not start; see $log" >&2; exit 1; }

step "creating the fuzzing users and seed data"
new_id() { python3 -c 'import uuid; print(uuid.uuid4())'; }
mint() {
    python3 - "$1" "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
uid, secret = sys.argv[1], sys.argv[2].encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"user_id": uid, "iat": now, "iat_ms": now * 1000, "exp": now + 7200}).encode())
sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}
uid=$(new_id) bob=$(new_id) carol=$(new_id)
password="Fz1!$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# Two groups: the fuzzer's (bob and carol members) and bob's (fuzzer member).
g1=$(new_id) c1=$(new_id) g2=$(new_id) c2=$(new_id)
psql_admin -d "$db" -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION IF NOT EXISTS pgcrypto;
INSERT INTO users (id, email, username, full_name, role, password_hash) VALUES
  ('$uid', 'fuzz@example.com', 'fuzzer', 'Fuzz User', 'admin', crypt('$password', gen_salt('bf', 10))),
  ('$bob', 'bob@example.com', 'bobby', 'Bob Builder', 'user', crypt('$password', gen_salt('bf', 10))),
  ('$carol', 'carol@example.com', 'carol', 'Carol Singer', 'user', NULL);
INSERT INTO chats (id, type) VALUES ('$c1', 'group'), ('$c2', 'group');
INSERT INTO group_chats (id, name, description, is_public, invite_code, invite_expires_at, chat_id, created_by) VALUES
  ('$g1', 'Fuzz Group', 'seeded', true, 'fuzzinvite01', now() + interval '7 days', '$c1', '$uid'),
  ('$g2', 'Bob Group', '', false, 'fuzzinvite02', now() + interval '7 days', '$c2', '$bob');
INSERT INTO group_members (id, role, joined_at, group_chat_id, user_id) VALUES
  (gen_random_uuid(), 'owner', clock_timestamp(), '$g1', '$uid'),
  (gen_random_uuid(), 'member', clock_timestamp(), '$g1', '$bob'),
  (gen_random_uuid(), 'admin', clock_timestamp(), '$g1', '$carol'),
  (gen_random_uuid(), 'owner', clock_timestamp(), '$g2', '$bob'),
  (gen_random_uuid(), 'member', clock_timestamp(), '$g2', '$uid');
SQL
token=$(mint "$uid")
st_config=$target_dir/fuzz-schemathesis.toml
python3 scripts/fuzz_seed.py "http://127.0.0.1:$port" "$st_config" "$(printf \
    '{"users":[{"id":"%s","token":"%s"},{"id":"%s","token":"%s"},{"id":"%s","token":"%s"}],"groups":["%s","%s"]}' \
    "$uid" "$token" "$bob" "$(mint "$bob")" "$carol" "$(mint "$carol")" "$c1" "$c2")"

step "fuzzing (schemathesis; server log in $log)"
python3 scripts/fuzz_unlimit.py "${REDIS_HOST:-127.0.0.1}" "${REDIS_PORT:-6379}" "$redis_db" "$redis_prefix" &
limiter_reset=$!
report=$target_dir/fuzz-report.txt
exclude='^/(ws|storage/.*|docs|asyncapi.yaml|openapi.json|api/auth/logout)$'
[[ -n ${FUZZ_EXCLUDE_PATH_REGEX:-} ]] && exclude="$exclude|$FUZZ_EXCLUDE_PATH_REGEX"
eval "extra=(${FUZZ_EXTRA_ARGS:-})"
set +e
.venv/bin/st --config-file "$st_config" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "${FUZZ_EXAMPLES:-40}" \
    --workers "${FUZZ_WORKERS:-1}" \
    --rate-limit "${FUZZ_RATE_LIMIT:-60/s}" \
    --exclude-path-regex "$exclude" \
    --continue-on-failure "${extra[@]}" 2>&1 | tee "$report"
rc=${PIPESTATUS[0]}
set -e
kill "$limiter_reset" 2>/dev/null || true
wait "$limiter_reset" 2>/dev/null || true
limiter_reset=
if grep -q "panicked" "$log"; then
    echo "error: the server panicked during fuzzing; see $log" >&2
    exit 1
fi
exit "$rc"
