#!/usr/bin/env bash
# One pass over every figure of bench/README.md's tables (issue 21: "re-run
# everything in one final pass on an idle machine"), one scenario after the
# other, each table and its start time appended to a log. Needs the release
# build and an idle machine; takes about 10 minutes on 2 cores. The peer
# comparison (about 35 minutes more, and Synapse set up by hand) is not in it.
#
#   bench/final-pass.sh [log]        # default: /tmp/atoitalk-final-pass.md
set -euo pipefail
cd "$(dirname "$0")/.."
log=${1:-/tmp/atoitalk-final-pass.md}
bench=target/release/atoitalk-bench
[ -x "$bench" ] && [ -x target/release/atoitalk ] || {
    echo "build first: cargo build --release -p atoitalk -p atoitalk-bench" >&2
    exit 1
}
: >"$log"
: >"$log.full"
run() {
    printf '\n## %s\n\n`%s`, started %s, load average %s\n' "$1" "${*:2}" \
        "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log" >&2
    # A failed scenario is logged and the pass goes on; its full output is
    # in "$log.full".
    "${@:2}" 2>&1 | tee -a "$log.full" | grep -E '^\||tx/s' | tee -a "$log" \
        || echo "(failed: see $log.full)" | tee -a "$log"
}
run "send, 32 clients" $bench send --clients 32 --secs 15 --users 2000
run "send, 1 client" $bench send --clients 1 --secs 10 --users 2000
run "fan-out, 1,000 members" $bench fanout --members 1000 --rate 100 --secs 10 --instances 2
run "fan-out, 100 members, 1 instance" $bench fanout --members 100 --rate 100 --secs 10 --instances 1
run "10,000 idle WebSockets" $bench connections --count 10000
run "19,000 idle WebSockets in 4 steps" $bench scale idle --count 19000 --steps 4
run "chat list and deep page" $bench paging --messages 1000000 --chats 10000 --requests 1000
run "reconnect storm" $bench storm --users 10000 --group 20 --rate 200 --window 10
run "search" $bench search --messages 1000000 --chats 10000 --mine 500 --requests 800
run "fan-out, 10,000 members" $bench scale fanout --members 10000 --rate 10 --secs 10 --instances 2
BENCH_RESUME_ENABLED=false run "fan-out, 10,000 members, resume store off" \
    $bench scale fanout --members 10000 --rate 10 --secs 10 --instances 2
# The machine's own floor for that delivery (no database, Redis or store).
run "floor, 10,000 members, task per socket" \
    $bench scale floor --members 10000 --rate 10 --secs 10 --instances 2
run "floor, 10,000 members, one writer thread" \
    $bench scale floor --raw --members 10000 --rate 10 --secs 10 --instances 2
echo "==> done: $log" >&2
