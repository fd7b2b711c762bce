#!/usr/bin/env bash
# A throw-away PostgreSQL primary + streaming standby on loopback ports, for
# the read-replica tests. The machine's own cluster is never touched: both
# live in a fresh directory under /tmp and go away with pgr_stop.
#
# Executed:
#   scripts/pg-replica.sh start     # prints PGR_DIR=... TEST_DB_PORT=... TEST_DB_READ_PORT=...
#   scripts/pg-replica.sh stop DIR  # stops both servers and removes DIR
# Sourced:
#   . scripts/pg-replica.sh; pgr_start && ...; pgr_stop
#   pgr_start exports PGR_DIR, PGR_PRIMARY_PORT and PGR_STANDBY_PORT.
#
# As root, the servers run as the postgres OS user (initdb refuses root).
# Both trust every loopback connection (user postgres, any password) and the
# primary allows replication from 127.0.0.1 (pg_basebackup -R makes the
# standby). fsync is off: the data is disposable and the suite gets faster.

pgr_log() { printf '==> %s\n' "$*" >&2; }
pgr_err() { printf 'pg-replica.sh: error: %s\n' "$*" >&2; }

_pgr_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1 && d=$(pg_config --bindir 2>/dev/null) && [[ -x $d/initdb ]]; then
        echo "$d"; return 0
    fi
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n $d && -x $d/initdb ]] && { echo "$d"; return 0; }
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

# Runs "$@" as the user owning the clusters (postgres when we are root).
_pgr_as() {
    if [[ ${EUID:-$(id -u)} -ne 0 ]]; then "$@"
    elif command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"
    else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

_pgr_port_free() { ! timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

_pgr_free_port() {
    local p i
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        [[ $p == "${1:-}" ]] && continue
        _pgr_port_free "$p" && { echo "$p"; return 0; }
    done
    return 1
}

_pgr_conf() {   # settings both servers share; port is appended per server
    cat <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGR_DIR'
max_connections = 400
shared_buffers = 64MB
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
fsync = off
full_page_writes = off
EOF
}

_pgr_wait_ready() {   # port, seconds
    local deadline=$((SECONDS + $2))
    until "$_PGR_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

pgr_start() {
    local t0=$SECONDS wait=${SERVICES_WAIT_SECS:-60}
    _PGR_BIN=$(_pgr_bindir) || { pgr_err "initdb not found; install postgresql"; return 1; }
    if [[ ${EUID:-$(id -u)} -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        pgr_err "running as root needs the postgres OS user (initdb refuses root)"; return 1
    fi
    PGR_DIR=$(mktemp -d /tmp/atoitalk-pgr.XXXXXX) || return 1
    export PGR_DIR
    [[ ${EUID:-$(id -u)} -eq 0 ]] && chown postgres: "$PGR_DIR"
    PGR_PRIMARY_PORT=$(_pgr_free_port) && PGR_STANDBY_PORT=$(_pgr_free_port "$PGR_PRIMARY_PORT") || {
        pgr_err "no free port found"; return 1; }
    export PGR_PRIMARY_PORT PGR_STANDBY_PORT
    pgr_log "creating a PostgreSQL primary on 127.0.0.1:$PGR_PRIMARY_PORT ($PGR_DIR)"
    _pgr_as "$_PGR_BIN/initdb" -D "$PGR_DIR/primary" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$PGR_DIR/initdb.log" 2>&1 || { pgr_err "initdb failed; see $PGR_DIR/initdb.log"; return 1; }
    { _pgr_conf; echo "port = $PGR_PRIMARY_PORT"; } | _pgr_as tee -a "$PGR_DIR/primary/postgresql.conf" >/dev/null
    echo "host replication all 127.0.0.1/32 trust" | _pgr_as tee -a "$PGR_DIR/primary/pg_hba.conf" >/dev/null
    _pgr_as "$_PGR_BIN/pg_ctl" -D "$PGR_DIR/primary" -l "$PGR_DIR/primary.log" -s -w -t "$wait" start >&2 \
        || { pgr_err "primary did not start; see $PGR_DIR/primary.log"; return 1; }
    pgr_log "cloning a streaming standby on 127.0.0.1:$PGR_STANDBY_PORT (pg_basebackup -R)"
    _pgr_as "$_PGR_BIN/pg_basebackup" -h 127.0.0.1 -p "$PGR_PRIMARY_PORT" -U postgres -D "$PGR_DIR/standby" \
        -R -X stream -c fast >"$PGR_DIR/basebackup.log" 2>&1 \
        || { pgr_err "pg_basebackup failed; see $PGR_DIR/basebackup.log"; return 1; }
    echo "port = $PGR_STANDBY_PORT" | _pgr_as tee -a "$PGR_DIR/standby/postgresql.conf" >/dev/null
    _pgr_as "$_PGR_BIN/pg_ctl" -D "$PGR_DIR/standby" -l "$PGR_DIR/standby.log" -s -w -t "$wait" start >&2 \
        || { pgr_err "standby did not start; see $PGR_DIR/standby.log"; return 1; }
    _pgr_wait_ready "$PGR_STANDBY_PORT" "$wait" || { pgr_err "standby does not answer"; return 1; }
    local deadline=$((SECONDS + wait))
    until [[ $("$_PGR_BIN/psql" -h 127.0.0.1 -p "$PGR_STANDBY_PORT" -U postgres -d postgres -qAtX \
                -c "select status from pg_stat_wal_receiver" 2>/dev/null) == streaming ]]; do
        ((SECONDS >= deadline)) && { pgr_err "standby is not streaming; see $PGR_DIR/standby.log"; return 1; }
        sleep 0.2
    done
    pgr_log "primary :$PGR_PRIMARY_PORT and streaming standby :$PGR_STANDBY_PORT up in $((SECONDS - t0)) s"
}

pgr_stop() {
    local dir=${1:-${PGR_DIR:-}} node bin
    [[ -n $dir && -d $dir && $dir == /tmp/atoitalk-pgr.* ]] || return 0
    bin=${_PGR_BIN:-$(_pgr_bindir)}
    for node in standby primary; do
        [[ -f $dir/$node/postmaster.pid ]] && _pgr_as "$bin/pg_ctl" -D "$dir/$node" -s -m immediate -w stop >/dev/null 2>&1
    done
    rm -rf "$dir"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -uo pipefail
    case ${1:-} in
        start) pgr_start || { pgr_stop; exit 1; }
               printf 'PGR_DIR=%s TEST_DB_PORT=%s TEST_DB_READ_PORT=%s\n' "$PGR_DIR" "$PGR_PRIMARY_PORT" "$PGR_STANDBY_PORT" ;;
        stop) pgr_stop "${2:-}" ;;
        *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
    esac
fi
