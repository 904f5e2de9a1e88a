#!/usr/bin/env bash
# Passthrough (raw TLS routed by SNI) through ../shared/bench/run.sh's
# `custom` mode, for snigate and for nginx `stream` + `ssl_preread`:
#
#   NOISY_PCT=400 ../shared/bench/run.sh custom "$PWD/benches/bench-passthrough.sh nginx" nginx-stream
#   NOISY_PCT=400 ../shared/bench/run.sh custom "$PWD/benches/bench-passthrough.sh snigate" snigate-passthrough
#
# A passthrough proxy holds no certificate, so the harness's contract (SNI
# a.test -> RSA, b.test -> ECDSA, else fallback; HTTP/1.1 to $BENCH_BACKEND)
# is met by a TLS terminator behind it: nginx, one worker, pinned to CPU 1
# with the backend and the load generators, holding the harness's
# certificates (the configuration of bench-nginx.sh: nginx_harness_proxy in
# benches/lib.sh). The proxy under test (CPU 0, one worker) reads the
# ClientHello, picks an upstream by SNI (three names, all to the
# terminator) and copies bytes both ways.
#
# The terminator daemonizes into its own session, so the harness counts
# only the proxy's CPU seconds and memory ("per CPU-s of target", RSS per
# idle connection). It does count the terminator's CPU as load from other
# processes, hence NOISY_PCT=400 (no repeats for that); the checks column
# still shows it. Stopped with this script (TERM from the harness).
set -euo pipefail
which="${1:?usage: bench-passthrough.sh snigate|nginx}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh" # new_tmpdir, nginx_conf, nginx_harness_proxy, ...
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
certs="${BENCH_CERT_DIR:?run me from ../shared/bench/run.sh}"
listen="${BENCH_LISTEN:-127.0.0.1:8443}"
backend="${BENCH_BACKEND:-127.0.0.1:8080}"
term_addr="127.0.0.1:18443"
need_stream_module

dir="$(new_tmpdir snigate-pt)"
term_pid() { cat "$dir/term.pid" 2>/dev/null || true; }
stop_terminator() {
    local p
    p="$(term_pid)"
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}
child=""
stop_all() {
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null || true
    stop_terminator
    rm -rf "$dir"
}
trap stop_all EXIT
trap 'exit 143' TERM INT

# The previous start's terminator (the harness restarts the target for the
# memory rows) must have let go of the port.
for _ in $(seq 100); do
    [ -z "$(ss -Hltn "sport = :${term_addr##*:}")" ] && break
    sleep 0.1
done

nginx_conf "$dir/term" 19000 "worker_rlimit_nofile 20000;" <<EOF
http {
$(nginx_http_basics "$dir")
  client_header_timeout 600s;
$(nginx_harness_proxy "$term_addr" "$backend" "$certs")
}
EOF
# nginx daemonizes (a new session) and so leaves the harness's accounting.
start_nginx "$dir/term" 1

case "$which" in
nginx)
    nginx_conf "$dir/proxy" 19000 "load_module $STREAM_MODULE;" "worker_rlimit_nofile 20000;" \
        "daemon off;" "master_process on;" <<EOF
stream {
  map \$ssl_preread_server_name \$pick {
    a.test $term_addr;
    b.test $term_addr;
    default $term_addr;
  }
  server {
    listen $listen backlog=4096;
    ssl_preread on;
    preread_timeout 600s;
    proxy_timeout 600s;
    proxy_pass \$pick;
  }
}
EOF
    nginx -c "$dir/proxy.conf" -p "$dir" -e "$dir/proxy-error.log" &
    ;;
snigate)
    cat > "$dir/snigate.toml" <<EOF
[runtime]
workers = 1
[log]
level = "warn"
[timeouts]
client_idle = "600s"
client_hello = "600s"
[[listener]]
name = "pt"
bind = ["$listen"]
mode = "passthrough"
default_upstream = "terminator"
# Every load generator connects from 127.0.0.1: no per-address limit.
max_connections_per_ip = 0
[[route]]
hosts = ["a.test", "b.test"]
upstream = "terminator"
[[upstream]]
name = "terminator"
servers = ["$term_addr"]
EOF
    "$bin" run -c "$dir/snigate.toml" &
    ;;
*)
    echo "usage: bench-passthrough.sh snigate|nginx" >&2
    exit 2
    ;;
esac
child=$!
wait "$child"
