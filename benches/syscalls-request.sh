#!/usr/bin/env bash
# System calls per proxied keep-alive request: snigate (TLS, HTTP/1.1 to
# the backend) against nginx as the same reverse proxy, with the same
# client. Each system call costs the kernel time that callgrind
# (benches/callgrind-request.sh) does not see.
#
# What: an nginx backend (`GET /` -> 19 B) on 127.0.0.1:18082; in front of
# it snigate (1 worker) on :18447 and nginx (1 worker, upstream keep-alive
# pool) on :18448, both with a.test from `snigate gen-certs` (ECDSA). For
# each proxy, `strace -f -c` is attached while curl sends N requests on one
# keep-alive connection (HTTP/1.1, then h2 for snigate and nginx alike);
# the script prints the proxy's system calls per request, by call (the
# handshake's few dozen are spread over N).
#
# Run:   benches/syscalls-request.sh          (about 30 s)
#   env: N=2000  SNIGATE_BIN=target/release/snigate  KEEP=1 (keep the folder)
# Needs: strace, nstat (iproute2), curl, nginx, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
n="${N:-2000}"
need strace nstat curl nginx
dir="$(new_tmpdir snigate-sysreq)"
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
nginx_backend_http 127.0.0.1:18082 'return 200 "hello world 19 B..\n";' | nginx_conf "$dir/backend" 1000
start_nginx "$dir/backend"
nginx_https_proxy_http 127.0.0.1:18448 127.0.0.1:18082 | nginx_conf "$dir/proxy" 1000
start_nginx "$dir/proxy"
snigate_https_conf 127.0.0.1:18447 127.0.0.1:18082 >"$dir/snigate.toml"
"$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
snigate_pid=$!
PIDS+=("$snigate_pid")

# curl_n PORT PROTO N: N requests on one connection.
curl_n() {
    a_test_get "$1" "$3" -f "$2"
}
for port in 18447 18448; do
    retry 100 0.1 curl_n "$port" --http1.1 1 || { echo "nothing answers on port $port" >&2; exit 1; }
done

# requests NAME PORT PROTO: N requests through PORT.
requests() {
    curl_n "$2" "$3" "$n" || { echo "requests through $1 failed" >&2; exit 1; }
}
# count NAME PID PORT PROTO: N requests through PORT with strace on PID.
count() {
    local name="$1" pid="$2" port="$3" proto="$4"
    curl_n "$port" "$proto" 50 # warm-up: backend pool
    syscalls_per "$pid" "$dir/$name$proto.strace" "$n" \
        "== $name ${proto#--}: system calls per request ($n requests, one connection)" \
        requests "$name" "$port" "$proto"
}
nginx_worker="$(pgrep -P "$(cat "$dir/proxy.pid")" | head -1)"
for proto in --http1.1 --http2; do
    count snigate "$snigate_pid" 18447 "$proto"
    count nginx "$nginx_worker" 18448 "$proto"
done
