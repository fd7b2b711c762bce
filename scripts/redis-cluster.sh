#!/usr/bin/env bash
# A throw-away Redis Cluster on loopback: 3 masters, each with one replica
# (6 redis-server processes in cluster mode, made with
# `redis-cli --cluster create ... --cluster-replicas 1`), in a fresh
# directory under /tmp. Nothing is persisted; rcl_stop shuts every node down
# (`redis-cli shutdown nosave`, then the pid files: no procps needed) and
# removes the directory.
#
# Executed:
#   scripts/redis-cluster.sh start      # prints RCL_DIR=... TEST_REDIS_CLUSTER_NODES=...
#   scripts/redis-cluster.sh stop DIR
# Sourced:
#   . scripts/redis-cluster.sh; rcl_start && ...; rcl_stop
#   rcl_start exports RCL_DIR and TEST_REDIS_CLUSTER_NODES (host:port,...).

rcl_log() { printf '==> %s\n' "$*" >&2; }
rcl_err() { printf 'redis-cluster.sh: error: %s\n' "$*" >&2; }

_rcl_port_free() { ! timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

# A port that is free with its cluster bus port (+10000), not in "$@".
_rcl_free_port() {
    local p i taken
    for i in $(seq 1 100); do
        p=$((20000 + RANDOM % 30000))
        for taken in "$@"; do [[ $p == "$taken" ]] && continue 2; done
        _rcl_port_free "$p" && _rcl_port_free $((p + 10000)) && { echo "$p"; return 0; }
    done
    return 1
}

rcl_start() {
    local ports=() p i deadline
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        rcl_err "redis-server/redis-cli not found (scripts/services.sh installs them)"
        return 1
    fi
    RCL_DIR=$(mktemp -d /tmp/atoitalk-redis-cluster.XXXXXX) || return 1
    export RCL_DIR
    for i in 1 2 3 4 5 6; do
        p=$(_rcl_free_port "${ports[@]}") || { rcl_err "no free port"; return 1; }
        ports+=("$p")
        # A short node timeout: a killed master is replaced within seconds.
        redis-server --daemonize yes --bind 127.0.0.1 --port "$p" \
            --cluster-enabled yes --cluster-config-file "nodes-$p.conf" \
            --cluster-node-timeout 2000 --save "" --appendonly no \
            --dir "$RCL_DIR" --pidfile "$RCL_DIR/redis-$p.pid" \
            --logfile "$RCL_DIR/redis-$p.log" >&2 || { rcl_err "redis-server on $p failed"; return 1; }
    done
    echo "${ports[*]}" >"$RCL_DIR/ports"
    for p in "${ports[@]}"; do
        deadline=$((SECONDS + 15))
        until [[ $(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null) == PONG ]]; do
            ((SECONDS >= deadline)) && { rcl_err "node $p did not start; see $RCL_DIR/redis-$p.log"; return 1; }
            sleep 0.1
        done
    done
    local addrs=()
    for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$RCL_DIR/create.log" 2>&1 \
        || { rcl_err "redis-cli --cluster create failed; see $RCL_DIR/create.log"; return 1; }
    # Every node must see every slot served and its replica attached.
    deadline=$((SECONDS + 30))
    for p in "${ports[@]}"; do
        until redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' \
            && [[ $(redis-cli -h 127.0.0.1 -p "$p" cluster nodes 2>/dev/null | grep -c slave) == 3 ]]; do
            ((SECONDS >= deadline)) && { rcl_err "the cluster never became ok (node $p)"; return 1; }
            sleep 0.2
        done
    done
    TEST_REDIS_CLUSTER_NODES=$(IFS=,; echo "${addrs[*]}")
    export TEST_REDIS_CLUSTER_NODES
    rcl_log "redis cluster up: $TEST_REDIS_CLUSTER_NODES (3 masters + 3 replicas, $RCL_DIR)"
}

rcl_stop() {
    local dir=${1:-${RCL_DIR:-}} p pid
    [[ -n $dir && -d $dir ]] || return 0
    for p in $(cat "$dir/ports" 2>/dev/null); do
        redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
    done
    for p in $(cat "$dir/ports" 2>/dev/null); do
        pid=$(cat "$dir/redis-$p.pid" 2>/dev/null) || continue
        [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-} in
        start) rcl_start && printf 'RCL_DIR=%s\nTEST_REDIS_CLUSTER_NODES=%s\n' "$RCL_DIR" "$TEST_REDIS_CLUSTER_NODES" ;;
        stop)  rcl_stop "${2:?usage: $0 stop DIR}" ;;
        *)     echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
    esac
fi
