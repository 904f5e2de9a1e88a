#!/usr/bin/env bash
# CPU per proxied keep-alive request (issue 15 goal 2): nginx as a TLS
# reverse proxy against snigate (and, with FLOOR_BIN, the least a tokio +
# rustls + hyper proxy does, benches/request_floor.rs), measured in turns
# in one sitting.
#
# What: an nginx backend (plain HTTP, 19 B answers as the harness's, one
# worker, pinned to CPU 1) behind each proxy (one worker or thread each,
# pinned to CPU 0, the lab certificate a.test, ECDSA): nginx on
# 127.0.0.1:38461 (a pool of 128 keep-alive backend connections, as the
# harness's), snigate on :38462, the floor
# on :38463. For each in turn, h2load (on CPU 1) sends N requests over 50
# keep-alive HTTP/1.1 connections, and the script prints the proxy's CPU
# time per request from /proc (µs; utime + stime is the scheduler's exact
# run time, the split between them is sampled at the tick) and its
# voluntary context switches per request. The harness's "per CPU-s"
# figure is the inverse of this; here the proxies take turns on the same
# backend, and the floor separates what snigate adds from what the stack
# under it costs.
#
# Run:   benches/cpu-request.sh        (about a minute per round)
#        cargo bench --bench request_floor --no-run   (prints FLOOR_BIN)
#   env: N=200000 RUNS=3  SNIGATE_BIN=target/release/snigate  FLOOR_BIN=
# Needs: nginx, h2load (nghttp2-client), curl, taskset, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
n="${N:-200000}"
need nginx h2load curl taskset
dir="$(new_tmpdir snigate-cpureq)"
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
nginx_conf "$dir/backend" 4096 <<EOT
$(nginx_backend_http 127.0.0.1:39461 'return 200 "hello world 19 B..\n";')
EOT
start_nginx "$dir/backend" 1
nginx_conf "$dir/proxy" 4096 <<EOT
http {
$(nginx_http_basics "$dir")
$(nginx_harness_pool 127.0.0.1:39461)
  server {
    listen 127.0.0.1:38461 ssl;
    ssl_certificate $dir/certs/a.test.crt; ssl_certificate_key $dir/certs/a.test.key;
    location / { proxy_pass http://backend; }
  }
}
EOT
start_nginx "$dir/proxy" 0

snigate_https_conf 127.0.0.1:38462 127.0.0.1:39461 >"$dir/snigate.toml"
taskset -c 0 "$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
PIDS+=("$!")
targets=("nginx 38461" "snigate 38462 $!")
if [ -n "${FLOOR_BIN:-}" ]; then
    taskset -c 0 "$FLOOR_BIN" 127.0.0.1:38463 127.0.0.1:39461 \
        "$dir/certs/a.test.crt" "$dir/certs/a.test.key" >"$dir/floor.log" 2>&1 &
    PIDS+=("$!")
    targets+=("floor 38463 $!")
fi
for t in "${targets[@]}"; do
    read -r _ port _ <<<"$t"
    retry 100 0.1 a_test_get "$port" 1 || { echo "nothing answers on port $port" >&2; exit 1; }
done
targets[0]="nginx 38461 $(pgrep -P "$(cat "$dir/proxy.pid")" | head -1)"

# measure NAME PORT PID: N keep-alive requests through PORT; PID's CPU per request.
measure() {
    cpu_per "$1" "$3" "$n" request "$dir/$1.h2load" \
        taskset -c 1 h2load --h1 -n "$n" -c 50 "https://127.0.0.1:$2/"
}
for _ in $(seq "${RUNS:-3}"); do
    for t in "${targets[@]}"; do
        # shellcheck disable=SC2086 # NAME PORT PID
        measure $t
    done
done
