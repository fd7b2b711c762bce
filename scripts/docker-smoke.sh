#!/usr/bin/env bash
# Proves the Dockerfile without an image registry: builds a Debian 13 base
# image from Debian's packages (debootstrap + `docker import`), builds the
# project image on it changing nothing but the BASE_IMAGE build argument,
# runs the API and the scheduler against this machine's PostgreSQL and Redis
# (host network) and checks /readyz, the image's HEALTHCHECK and one
# sign-up-and-send over the API. Slow (a release build inside the image);
# CI does not run it.
#
#   scripts/docker-smoke.sh            # as root; starts dockerd if needed
#
# Crates: VENDOR=1 (the default) runs `cargo vendor` on the host into
# ./vendor, which the Dockerfile then uses, so the image build reaches only
# the Debian archive (for rustc/cargo from trixie-backports). VENDOR=0 lets
# the build fetch from crates.io itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'docker-smoke: %s\n' "$*" >&2; exit 1; }

SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE_TAG=${BASE_TAG:-atoitalk-base:$SUITE}
IMAGE=${IMAGE:-atoitalk:smoke}
VENDOR=${VENDOR:-1}
DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-5432} DB_USER=${DB_USER:-postgres} DB_PASSWORD=${DB_PASSWORD:-postgres}
REDIS_HOST=${REDIS_HOST:-127.0.0.1} REDIS_PORT=${REDIS_PORT:-6379}
PORT=${SMOKE_PORT:-18480}
SCHED_PORT=${SMOKE_SCHEDULER_PORT:-18481}
DB_NAME=atoitalk_smoke_$$
PREFIX="smoke$$:"
API=atoitalk-smoke-api-$$
SCHED=atoitalk-smoke-scheduler-$$
BUILD_LOG=/tmp/atoitalk-docker-build-${IMAGE//[^a-zA-Z0-9]/-}.log
# The classic builder: no buildx plugin is needed.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and dockerd need it)"

cleanup() {
    docker rm -f "$API" "$SCHED" >/dev/null 2>&1 || true
    PGPASSWORD=$DB_PASSWORD psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -qc \
        "DROP DATABASE IF EXISTS \"$DB_NAME\"" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "docker daemon"
if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1; then
        apt-get install -y --no-install-recommends docker.io >/dev/null
    fi
    (dockerd >/tmp/dockerd.log 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "dockerd did not start; see /tmp/dockerd.log"
fi

step "base image $BASE_TAG (debootstrap $SUITE from $MIRROR)"
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || apt-get install -y debootstrap >/dev/null
    rootfs=$(mktemp -d /tmp/atoitalk-rootfs.XXXXXX)
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >/tmp/atoitalk-debootstrap.log 2>&1 \
        || die "debootstrap failed; see /tmp/atoitalk-debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
fi

if [[ $VENDOR == 1 ]]; then
    step "cargo vendor (crates into the build context)"
    cargo vendor --locked --versioned-dirs vendor >/dev/null
fi

step "image $IMAGE (Dockerfile unchanged, --build-arg BASE_IMAGE=$BASE_TAG)"
start=$(date +%s)
docker build --network host --build-arg BASE_IMAGE="$BASE_TAG" -t "$IMAGE" . >"$BUILD_LOG" 2>&1 \
    || { tail -40 "$BUILD_LOG" >&2; die "image build failed; see $BUILD_LOG"; }
echo "built in $(( $(date +%s) - start )) s; $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
[[ $(docker image inspect -f '{{.Config.User}}' "$IMAGE") == atoitalk ]] || die "image does not run as the atoitalk user"

step "database $DB_NAME"
PGPASSWORD=$DB_PASSWORD psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -qc "CREATE DATABASE \"$DB_NAME\""

env_args=(
    -e APP_PORT="$PORT" -e APP_URL="http://127.0.0.1:$PORT"
    # development: the log mailer prints the sign-up code, which this script reads.
    -e APP_ENV=development
    -e DB_HOST="$DB_HOST" -e DB_PORT="$DB_PORT" -e DB_USER="$DB_USER" -e DB_PASSWORD="$DB_PASSWORD" -e DB_NAME="$DB_NAME"
    -e REDIS_HOST="$REDIS_HOST" -e REDIS_PORT="$REDIS_PORT" -e REDIS_KEY_PREFIX="$PREFIX"
    -e JWT_SECRET=smoke-jwt-secret-0123456789abcdef0123456789 -e OTP_SECRET=smoke-otp-secret-0123456789abcdef
    -e SCHEDULER_METRICS_PORT="$SCHED_PORT"
)
step "running the API (serve) and the scheduler on the host network"
docker run -d --name "$API" --network host "${env_args[@]}" "$IMAGE" >/dev/null
url="http://127.0.0.1:$PORT"
for _ in $(seq 90); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "$url/readyz" || { docker logs "$API" 2>&1 | tail -30 >&2; die "/readyz did not answer 200"; }
echo
docker run -d --name "$SCHED" --network host "${env_args[@]}" "$IMAGE" scheduler >/dev/null

step "HEALTHCHECK"
health=
for _ in $(seq 60); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$API")
    [[ $health == healthy ]] && break
    sleep 1
done
[[ $health == healthy ]] || die "container health is $health"
echo "api container: $health"

step "sign up two users and send a message"
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
signup() {
    local name=$1 email="$1$$@example.com"
    curl -fsS -X POST "$url/api/otp/send" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"mode\":\"register\",\"captcha_token\":\"x\"}" >/dev/null
    local code=
    for _ in $(seq 20); do
        code=$(docker logs "$API" 2>&1 | grep -F "$email" | grep -oE '\b[0-9]{6}\b' | tail -1 || true)
        [[ -n $code ]] && break
        sleep 0.5
    done
    [[ -n $code ]] || die "no sign-up code for $email in the API log"
    curl -fsS -X POST "$url/api/auth/register" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"username\":\"$name$$\",\"code\":\"$code\",\"full_name\":\"Smoke $name\",\"password\":\"Sm0ke-Passw0rd!\",\"captcha_token\":\"x\"}"
}
a=$(signup alice)
b=$(signup bob)
a_token=$(jget '["data"]["token"]' <<<"$a")
b_token=$(jget '["data"]["token"]' <<<"$b")
b_id=$(jget '["data"]["user"]["id"]' <<<"$b")
chat=$(curl -fsS -X POST "$url/api/chats/private" -H "Authorization: Bearer $a_token" \
    -H 'Content-Type: application/json' -d "{\"target_user_id\":\"$b_id\"}" | jget '["data"]["id"]')
curl -fsS -X POST "$url/api/messages" -H "Authorization: Bearer $a_token" -H 'Content-Type: application/json' \
    -d "{\"chat_id\":\"$chat\",\"content\":\"hello from the container\"}" >/dev/null
seen=$(curl -fsS "$url/api/chats/$chat/messages" -H "Authorization: Bearer $b_token" \
    | python3 -c 'import json,sys; print([m["content"] for m in json.load(sys.stdin)["data"]])')
[[ $seen == *"hello from the container"* ]] || die "bob does not see the message: $seen"
echo "bob sees: $seen"

step "scheduler"
[[ $(docker inspect -f '{{.State.Running}}' "$SCHED") == true ]] \
    || { docker logs "$SCHED" 2>&1 | tail -20 >&2; die "scheduler container exited"; }
if curl -fsS "http://127.0.0.1:$SCHED_PORT/metrics" >/dev/null 2>&1; then
    echo "scheduler /metrics answers"
fi
docker exec "$API" atoitalk status || true

step "docker smoke test passed"
