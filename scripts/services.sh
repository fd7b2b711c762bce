#!/usr/bin/env bash
# Start the local dependencies AtoiTalk's tests need: PostgreSQL, Redis and,
# on request, an S3-compatible test server (moto).
#
# Idempotent and quick when everything already runs. Works on a fresh Debian
# machine too: missing packages are installed with apt-get (as root, or via
# sudo), missing Python tools go into $REPO/.venv.
#
# Executed:
#   scripts/services.sh               # postgres + redis
#   scripts/services.sh s3            # postgres + redis + S3 test server (= "all")
#   scripts/services.sh NAME NAME...  # only the named ones: postgres (pg, db),
#                                     # redis, s3 (moto), toolchain (cargo + a
#                                     # C compiler); a lone "s3" means all
#   scripts/services.sh stop-s3       # stop the moto server this script started
#   scripts/services.sh --help
# PostgreSQL: also makes sure role postgres has password "postgres", so both
# trust and password auth work on 127.0.0.1. The moto server keeps its data in
# memory only: buckets are gone after stop-s3 or a restart.
# Sourced:
#   . scripts/services.sh
#   svc_ensure_toolchain; svc_ensure_postgres; svc_ensure_redis; svc_ensure_s3
#   svc_ensure_all [s3]; svc_stop_s3; svc_read_dotenv FILE [NAME...]
# Each function returns 0 when its service answers, non-zero (after printing
# what to do next) otherwise. Sourcing runs nothing and sets no shell options.
#
# Environment:
#   DB_HOST (127.0.0.1)  DB_PORT (5432)      PostgreSQL to check / start; when
#                                             this script installs PostgreSQL, its
#                                             cluster is set up on DB_PORT
#   REDIS_HOST (127.0.0.1)  REDIS_PORT (6379) Redis to check / start
#   S3_TEST_PORT (9090)                       moto server on 127.0.0.1
#   SERVICES_WAIT_SECS (30)                   how long to wait for each service
#   MOTO_SPEC ('moto[server]>=5,<6')          pip requirement for the moto install
# Only services on a local address (127.0.0.1, localhost, ::1) are started;
# a remote DB_HOST/REDIS_HOST is only checked.

_SVC_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_SVC_APT_UPDATED=

svc_log()  { printf '==> %s\n' "$*" >&2; }
svc_err()  { printf 'services.sh: error: %s\n' "$*" >&2; }

# Wait up to SERVICES_WAIT_SECS for the command "$@" to succeed.
# With _SVC_WAIT_PIDFILE set, give up early once that process has died.
_svc_wait() {
    local deadline=$((SECONDS + ${SERVICES_WAIT_SECS:-30})) pid
    while ! "$@" >/dev/null 2>&1; do
        ((SECONDS >= deadline)) && return 1
        if [[ -n ${_SVC_WAIT_PIDFILE:-} && -s $_SVC_WAIT_PIDFILE ]]; then
            pid=$(<"$_SVC_WAIT_PIDFILE")
            kill -0 "$pid" 2>/dev/null || { "$@" >/dev/null 2>&1; return; }
        fi
        sleep 0.3
    done
}

_svc_now_ms() { local t=${EPOCHREALTIME:-$SECONDS.000}; t=${t/,/.}; echo $(( ${t%.*} * 1000 + 10#${t#*.} / 1000 )); }

_svc_is_local() {
    case "$1" in 127.*|localhost|::1|"[::1]") return 0 ;; *) return 1 ;; esac
}

# Plain TCP probe through bash's /dev/tcp.
_svc_tcp_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Run as root: directly, or through sudo when we are not root.
_svc_root() {
    if [[ ${EUID:-$(id -u)} -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else svc_err "need root for: $* (run as root or install sudo)"; return 1
    fi
}

# Run as the postgres OS user (for peer auth over the Unix socket).
_svc_as_postgres() {
    if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"
        else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    elif command -v sudo >/dev/null 2>&1; then sudo -u postgres "$@"
    else return 1
    fi
}

_svc_apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        svc_err "apt-get not found; install $* with your package manager"
        return 1
    fi
    if [[ -z $_SVC_APT_UPDATED ]]; then
        svc_log "apt-get update"
        _svc_root apt-get update -qq >&2 || {
            svc_err "apt-get update failed; check that the Debian mirror is reachable"; return 1; }
        _SVC_APT_UPDATED=1
    fi
    svc_log "apt-get install $*"
    _svc_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || {
        svc_err "apt-get install $* failed; install it by hand"; return 1; }
}

# svc_read_dotenv FILE [NAME...]: exports the variables FILE (dotenv syntax,
# read by bash in an empty environment) sets, all of them or only the NAMEs,
# except those already set: real environment variables win, as in the binary.
svc_read_dotenv() {
    local file=$1 name value
    shift
    [[ -f $file ]] || return 0
    while IFS= read -r -d '' name && IFS= read -r -d '' value; do
        [[ -n ${!name+x} ]] && continue
        printf -v "$name" '%s' "$value"
        export "$name"
    done < <(env -i bash -c 'set -a; . "$0" >/dev/null || exit
        (($# == 0)) && set -- $(compgen -e | grep -vxE "PWD|OLDPWD|SHLVL|_")
        for n; do [[ -n ${!n+x} ]] && printf "%s\0%s\0" "$n" "${!n}"; done' "$file" "$@")
}

# ----------------------------------------------------------------- toolchain

# cargo, and the C toolchain rustup does not bring: rustc links through `cc`
# and ring compiles C, so a minimal Debian image fails with "linker 'cc' not
# found" without it. (No crate here needs pkg-config or system libraries.)
svc_ensure_toolchain() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
            export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        else
            svc_err "cargo not found; install Rust with https://rustup.rs and re-run"
            return 1
        fi
    fi
    if command -v cc >/dev/null 2>&1 && command -v ar >/dev/null 2>&1; then
        return 0
    fi
    svc_log "no C compiler/linker (cc, ar) found; installing build-essential (apt)"
    if ! _svc_apt_install build-essential || ! command -v cc >/dev/null 2>&1; then
        svc_err "a C toolchain is needed to build; run: sudo apt-get install build-essential"
        return 1
    fi
    svc_log "C toolchain installed ($(command -v cc))"
}

# ---------------------------------------------------------------- PostgreSQL

_svc_pg_ready() {
    local host=${DB_HOST:-127.0.0.1} port=${DB_PORT:-5432}
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$host" -p "$port" -t 2
    else
        _svc_tcp_open "$host" "$port"
    fi
}

# Make sure user postgres / password postgres can log in over TCP, so that
# password auth (scram/md5 in pg_hba.conf) works as well as trust.
_svc_pg_password() {
    local host=${DB_HOST:-127.0.0.1} port=${DB_PORT:-5432} out
    command -v psql >/dev/null 2>&1 || return 0   # no client: nothing to check with
    out=$(PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -h "$host" -p "$port" -U postgres -d postgres \
            -qAtX -c "select rolpassword is null from pg_authid where rolname = 'postgres'" 2>/dev/null) || true
    if [[ $out == f ]]; then return 0; fi
    if [[ $out == t ]]; then   # logged in (trust) but the role has no password yet
        PGPASSWORD=postgres psql -h "$host" -p "$port" -U postgres -d postgres -qAtX \
            -c "alter role postgres password 'postgres'" >/dev/null 2>&1 && return 0
    fi
    if _svc_is_local "$host" && id postgres >/dev/null 2>&1; then
        svc_log "setting password of role postgres"
        if _svc_as_postgres psql -p "$port" -qAtX -c "alter role postgres password 'postgres'" >/dev/null 2>&1 \
           && PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -h "$host" -p "$port" -U postgres -d postgres \
                  -qAtX -c 'select 1' >/dev/null 2>&1; then
            return 0
        fi
    fi
    svc_err "cannot log in to PostgreSQL at $host:$port as postgres/postgres;" \
            "run: runuser -u postgres -- psql -c \"alter role postgres password 'postgres'\"" \
            "and allow 'host all all 127.0.0.1/32 scram-sha-256' (or trust) in pg_hba.conf"
    return 1
}

_svc_pg_installed() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Prints "VERSION NAME" of the Debian cluster configured for port $1
# (/etc/postgresql/VERSION/NAME/postgresql.conf; no port line means 5432).
_svc_pg_cluster_for_port() {
    local conf cport rel
    for conf in /etc/postgresql/*/*/postgresql.conf; do
        [[ -f $conf ]] || continue
        cport=$(sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$conf" | tail -1)
        if [[ ${cport:-5432} == "$1" ]]; then
            rel=${conf#/etc/postgresql/}; rel=${rel%/postgresql.conf}
            echo "${rel%%/*} ${rel#*/}"
            return 0
        fi
    done
    return 1
}

# Moves cluster VERSION/NAME to port $3 (stopping it first: the package may
# have started it on 5432, or failed to because something else holds 5432).
_svc_pg_move_cluster() {
    local ver=$1 name=$2 port=$3
    svc_log "moving PostgreSQL cluster $ver/$name to port $port"
    _svc_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop >/dev/null 2>&1 || true
    _svc_root pg_conftool "$ver" "$name" set port "$port" >&2
}

svc_ensure_postgres() {
    local host=${DB_HOST:-127.0.0.1} port=${DB_PORT:-5432} ver name fresh= found
    if _svc_pg_ready; then
        _svc_pg_password || return 1
        svc_log "postgres is up on $host:$port"
        return 0
    fi
    if ! _svc_is_local "$host"; then
        svc_err "PostgreSQL at $host:$port does not answer; start it there," \
                "or unset DB_HOST to use a local server"
        return 1
    fi
    if ! _svc_pg_installed; then
        svc_log "installing PostgreSQL (apt)"
        _svc_apt_install postgresql postgresql-contrib || {
            svc_err "install PostgreSQL 15+ or set DB_HOST/DB_PORT to a reachable server"; return 1; }
        fresh=1
    fi
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if found=$(_svc_pg_cluster_for_port "$port"); then
        read -r ver name <<<"$found"
    elif [[ -n $fresh && -f /etc/postgresql/$ver/main/postgresql.conf ]]; then
        # The package just created cluster "main" on the default port.
        name=main
        _svc_pg_move_cluster "$ver" main "$port" || {
            svc_err "cannot set port $port on cluster $ver/main; edit /etc/postgresql/$ver/main/postgresql.conf"; return 1; }
    elif ! compgen -G '/etc/postgresql/*/*/postgresql.conf' >/dev/null; then
        name=main
        svc_log "creating PostgreSQL $ver cluster 'main' on port $port"
        _svc_root pg_createcluster -p "$port" "$ver" main >&2 || {
            svc_err "pg_createcluster $ver main failed; create a cluster by hand or set DB_HOST/DB_PORT"; return 1; }
    else
        svc_err "no PostgreSQL cluster is configured for port $port (found:$(pg_lsclusters -h 2>/dev/null | awk '{printf " %s/%s:%s", $1, $2, $3}'));" \
                "set DB_PORT to one of those ports, or create one: pg_createcluster -p $port $ver atoitalk"
        return 1
    fi
    svc_log "starting postgres $ver/$name on port $port"
    _svc_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 \
        || svc_log "pg_ctlcluster reported an error; waiting anyway"
    if ! _svc_wait _svc_pg_ready; then
        svc_err "PostgreSQL did not answer on $host:$port within ${SERVICES_WAIT_SECS:-30}s;" \
                "see /var/log/postgresql/postgresql-$ver-$name.log"
        return 1
    fi
    _svc_pg_password || return 1
    svc_log "postgres is up on $host:$port"
}

# --------------------------------------------------------------------- Redis

_svc_redis_ready() {
    local host=${REDIS_HOST:-127.0.0.1} port=${REDIS_PORT:-6379}
    if command -v redis-cli >/dev/null 2>&1; then
        [[ $(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null) == PONG ]]
    else
        _svc_tcp_open "$host" "$port"
    fi
}

svc_ensure_redis() {
    local host=${REDIS_HOST:-127.0.0.1} port=${REDIS_PORT:-6379} log
    if _svc_redis_ready; then
        svc_log "redis is up on $host:$port"
        return 0
    fi
    if command -v redis-cli >/dev/null 2>&1 && _svc_tcp_open "$host" "$port"; then
        svc_err "something answers on $host:$port but not PONG to redis-cli ping" \
                "($(timeout 3 redis-cli -h "$host" -p "$port" ping 2>&1 | head -1));" \
                "stop it, or point REDIS_HOST/REDIS_PORT at a Redis without a password"
        return 1
    fi
    if ! _svc_is_local "$host"; then
        svc_err "Redis at $host:$port does not answer; start it there, or unset REDIS_HOST to use a local server"
        return 1
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        svc_log "installing redis-server (apt)"
        _svc_apt_install redis-server || {
            svc_err "install Redis 7+ (the resume store uses XADD <ms>-*) or set REDIS_HOST/REDIS_PORT to a reachable server"; return 1; }
        # the package may have started its own server on 6379
        if _svc_redis_ready; then svc_log "redis is up on $host:$port"; return 0; fi
    fi
    mkdir -p "$_SVC_REPO/target"
    log="$_SVC_REPO/target/redis-$port.log"
    svc_log "starting redis on 127.0.0.1:$port (log: $log)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir /tmp --logfile "$log" >&2 \
        || svc_log "redis-server reported an error; waiting anyway"
    if ! _svc_wait _svc_redis_ready; then
        svc_err "Redis did not answer on $host:$port within ${SERVICES_WAIT_SECS:-30}s;" \
                "see $log (is the port taken by something else?)"
        return 1
    fi
    svc_log "redis is up on $host:$port"
}

# ----------------------------------------------------------- S3 test server

_svc_http_ok() {   # any HTTP answer from $1 counts
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null --max-time 2 "$1"
    else
        "$_SVC_REPO/.venv/bin/python" -c 'import sys,urllib.request as u
try: u.urlopen(sys.argv[1], timeout=2)
except u.HTTPError: pass' "$1"
    fi
}

_svc_moto_install() {
    local venv="$_SVC_REPO/.venv" spec=${MOTO_SPEC:-'moto[server]>=5,<6'} t0=$SECONDS
    [[ -x $venv/bin/moto_server ]] && return 0
    if [[ ! -x $venv/bin/python ]]; then
        svc_log "creating virtualenv $venv"
        if ! python3 -m venv "$venv" >&2; then
            rm -rf "$venv"
            svc_log "python3 -m venv failed; installing python3-venv (apt)"
            _svc_apt_install python3-venv && /usr/bin/python3 -m venv "$venv" >&2 || {
                svc_err "cannot create $venv; install python3 with the venv module (Debian: python3-venv)"
                return 1; }
        fi
    fi
    svc_log "installing $spec into $venv (first time only, takes a while)"
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$spec" >&2; then
        svc_err "pip install '$spec' failed; check that PyPI is reachable, or delete $venv and retry"
        return 1
    fi
    svc_log "moto installed in $((SECONDS - t0))s"
}

svc_ensure_s3() {
    local port=${S3_TEST_PORT:-9090} url log pidf body
    url="http://127.0.0.1:$port/"
    log="$_SVC_REPO/target/moto.log" pidf="$_SVC_REPO/target/moto-$port.pid"
    if _svc_http_ok "$url" 2>/dev/null || _svc_tcp_open 127.0.0.1 "$port"; then
        if command -v curl >/dev/null 2>&1; then
            body=$(curl -s --max-time 2 "$url" 2>/dev/null) || true
            if [[ $body != *ListAllMyBucketsResult* ]]; then
                svc_err "port $port answers but not as an S3 server; stop what runs there or set S3_TEST_PORT to a free port"
                return 1
            fi
        fi
        svc_log "s3 (moto) is up on 127.0.0.1:$port"
        return 0
    fi
    _svc_moto_install || return 1
    mkdir -p "$_SVC_REPO/target"
    svc_log "starting s3 (moto) on 127.0.0.1:$port (log: $log)"
    # Detach fully (own session, no inherited stdio) so a caller reading our
    # output through a pipe is not kept waiting by the server. The child writes
    # its own pid: setsid forks when called from a job-control shell, so $!
    # would not be the server's pid there.
    local detach=()
    command -v setsid >/dev/null 2>&1 && detach=(setsid)
    "${detach[@]}" nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" \
        "$_SVC_REPO/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$log" 2>&1 &
    if ! _SVC_WAIT_PIDFILE=$pidf _svc_wait _svc_http_ok "$url"; then
        svc_err "moto did not come up on $url; see $log" \
                "(port taken? set S3_TEST_PORT to a free port)"
        return 1
    fi
    svc_log "s3 (moto) is up on 127.0.0.1:$port"
}

svc_stop_s3() {
    local pidf="$_SVC_REPO/target/moto-${S3_TEST_PORT:-9090}.pid" pid
    if [[ -f $pidf ]] && pid=$(<"$pidf") && kill -0 "$pid" 2>/dev/null; then
        svc_log "stopping s3 (moto, pid $pid)"
        kill "$pid" || true
    else
        svc_log "no moto server started by this script is running"
    fi
    rm -f "$pidf"
}

# ----------------------------------------------------------------------- all

# svc_ensure_all [s3]: postgres and redis, plus the S3 server when "s3" is given.
svc_ensure_all() {
    local rc=0 t0
    t0=$(_svc_now_ms)
    svc_ensure_postgres || rc=1
    svc_ensure_redis || rc=1
    if [[ ${1:-} == s3 ]]; then svc_ensure_s3 || rc=1; fi
    if ((rc == 0)); then
        svc_log "all services are up ($(( $(_svc_now_ms) - t0 )) ms)"
    else
        svc_err "some services are not up; see the messages above"
    fi
    return $rc
}

_svc_main() {
    local rc=0 arg
    if (($# == 0)); then svc_ensure_all; return; fi
    if (($# == 1)) && [[ $1 == s3 ]]; then svc_ensure_all s3; return; fi
    for arg in "$@"; do
        case $arg in
            toolchain)      svc_ensure_toolchain || rc=1 ;;
            postgres|pg|db) svc_ensure_postgres || rc=1 ;;
            redis)          svc_ensure_redis || rc=1 ;;
            s3|moto)        svc_ensure_s3 || rc=1 ;;
            all)            svc_ensure_all s3 || rc=1 ;;
            stop-s3)        svc_stop_s3 ;;
            -h|--help)      sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; return 0 ;;
            *) svc_err "unknown argument '$arg' (use: toolchain postgres redis s3 all stop-s3)"; return 2 ;;
        esac
    done
    return $rc
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -uo pipefail
    _svc_main "$@"
    exit $?
fi
