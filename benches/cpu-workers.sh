#!/usr/bin/env bash
# CPU and context switches per request with several worker threads: two
# snigate builds (SNIGATE_BIN and BEFORE_BIN) with `workers = WORKERS`,
# side by side on the same backend, measured in turns in one sitting.
#
# What: an nginx backend (plain HTTP, one worker, pinned to CPU 1) behind
# each snigate (https, the lab certificate; allowed on CPUs 0 and 1). For
# each build in turn, h2load (on CPU 1) sends N keep-alive requests over 50
# connections, then N/10 requests each on a new TLS connection
# ('Connection: close'); the script prints the proxy's user and kernel
# time and its context switches (all threads, voluntary and not, from
# /proc) per request. On a 2-core machine the load shares CPU 1 with the
# proxy's second worker, so rates mean little; CPU and switches per
# request are what tells a scheduler that moves work between threads from
# one that keeps each connection on one.
#
# Run:   BEFORE_BIN=/tmp/old-snigate benches/cpu-workers.sh
#        BEFORE_BIN=target/release/snigate BEFORE_WORKERS=1 benches/cpu-workers.sh
#        (one build at two workers against itself at one: the cost of
#        spreading the work, which a machine with spare cores for the load
#        would turn into the scaling figure)
#   env: N=200000 RUNS=3 WORKERS=2 SNIGATE_BIN=target/release/snigate BEFORE_BIN=
#        BEFORE_WORKERS (default WORKERS)
# Needs: nginx, h2load (nghttp2-client), curl, taskset, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
before="${BEFORE_BIN:-}"
n="${N:-200000}"
workers="${WORKERS:-2}"
before_workers="${BEFORE_WORKERS:-$workers}"
need nginx h2load curl taskset
dir="$(new_tmpdir snigate-cpuw)"
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
nginx_conf "$dir/backend" 4096 <<EOT
$(nginx_backend_http 127.0.0.1:39481 'return 200 "hello\n";')
EOT
start_nginx "$dir/backend" 1

# snigate_on NAME BIN PORT WORKERS: snigate on CPUs 0 and 1; sets LAST_PID.
LAST_PID=
snigate_on() {
    snigate_https_conf "127.0.0.1:$3" 127.0.0.1:39481 |
        sed "s/^workers = 1$/workers = $4/" >"$dir/$1.toml"
    taskset -c 0,1 "$2" run -c "$dir/$1.toml" >"$dir/$1.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
targets=()
snigate_on snigate "$bin" 38451 "$workers"
targets+=("snigate 38451 $LAST_PID")
if [ -n "$before" ]; then
    snigate_on before "$before" 38452 "$before_workers"
    targets+=("before 38452 $LAST_PID")
fi
for t in "${targets[@]}"; do
    read -r _ port _ <<<"$t"
    retry 100 0.1 a_test_get "$port" 1 || { echo "nothing answers on port $port" >&2; exit 1; }
done

tck="$(getconf CLK_TCK)"
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
# measure NAME PORT PID KIND REQUESTS [H2LOAD OPTION...]
measure() {
    local name=$1 port=$2 pid=$3 kind=$4 reqs=$5 u0 s0 u1 s1 c0 c1
    shift 5
    read -r u0 s0 < <(ticks "$pid")
    c0="$(switches "$pid")"
    taskset -c 1 h2load --h1 -n "$reqs" -c 50 "$@" "https://127.0.0.1:$port/" \
        >"$dir/$name.h2load" 2>&1
    c1="$(switches "$pid")"
    read -r u1 s1 < <(ticks "$pid")
    grep -q " $reqs succeeded, 0 failed" "$dir/$name.h2load" ||
        { echo "$name: not every request succeeded:" >&2; grep "requests:" "$dir/$name.h2load" >&2; exit 1; }
    awk -v n="$reqs" -v t="$tck" -v name="$name" -v kind="$kind" -v u=$((u1 - u0)) \
        -v s=$((s1 - s0)) -v c=$((c1 - c0)) 'BEGIN {
        k = 1e6 / t / n
        printf "%-8s %-10s user %6.2f  kernel %6.2f  total %6.2f  µs, %5.3f switches per request\n",
            name, kind, u * k, s * k, (u + s) * k, c / n }'
}
for _ in $(seq "${RUNS:-3}"); do
    for t in "${targets[@]}"; do
        read -r name port pid <<<"$t"
        measure "$name" "$port" "$pid" keep-alive "$n"
        measure "$name" "$port" "$pid" new-conn "$((n / 10))" -H 'Connection: close'
    done
done
