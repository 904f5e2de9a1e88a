#!/usr/bin/env bash
# Issue 15, goal 6: one worker against two, for snigate and nginx, in one
# sitting of ../shared/bench/run.sh (same certificates, backend and load).
#
#   benches/two-workers.sh            # four harness runs, about 20 minutes
#
# One worker: the harness's layout (proxy on CPU 0; backend and load
# generators on CPU 1). Two workers: snigate `workers = 2` and nginx
# `worker_processes 2`, each allowed on CPUs 0 and 1 (PROXY_CPUS=0,1), with
# the backend and load generators still on CPU 1. On a two-core machine the
# load generators then compete with the proxy's second worker, so the
# absolute rates cannot double; what the rows show is the rate and its cost
# per proxy CPU-second (the harness's "per CPU-s" column): a proxy that
# scales keeps its rate per CPU-second at two workers while it uses more
# CPU. The summary (../shared/bench/summarize.py) goes to stdout; results
# and raw output to $BENCH_OUT (default /tmp/snigate-two-workers).
#
# env: SNIGATE_BIN (default target/release/snigate), RUNS (passes per run,
# default 2), BENCH_OUT.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="${BENCH_DIR:-$here/../shared/bench}"
[ -x "$bench/run.sh" ] || { echo "no harness at $bench (set BENCH_DIR)" >&2; exit 1; }
export BENCH_OUT="${BENCH_OUT:-/tmp/snigate-two-workers}"
export SNIGATE_BIN="${SNIGATE_BIN:-$here/target/release/snigate}"
export RUNS="${RUNS:-2}" SKIP_DIRECT="${SKIP_DIRECT:-1}"
since="$(date -u '+%Y-%m-%d %H:%M')"
run() { # NAME WORKERS CPUS SCRIPT
    WORKERS="$2" PROXY_CPUS="$3" "$bench/run.sh" custom "$here/benches/$4" "$1"
}
run snigate-1w 1 "" bench-snigate.sh
run nginx-1w 1 "" bench-nginx.sh
run snigate-2w 2 0,1 bench-snigate.sh
run nginx-2w 2 0,1 bench-nginx.sh
python3 "$bench/summarize.py" "$BENCH_OUT/results.md" --since "$since"
