#!/usr/bin/env bash
# CPU per new passthrough connection, user and kernel apart: nginx `stream`
# + `ssl_preread` (as configured by default, and with `proxy_half_close
# on`), HAProxy in TCP mode reading the SNI, and snigate `mode =
# "passthrough"` (and, with BEFORE_BIN, a second snigate build), measured
# in turns in one sitting.
#
# What: an nginx TLS terminator (one worker, ECDSA, pinned to CPU 1) behind
# each proxy (one worker or thread each, pinned to CPU 0): nginx stream on
# 127.0.0.1:38444 and, half-close passed on, :38447 (the same worker
# process); HAProxy (`nbthread 1`, `req.ssl_sni`) on :38448; snigate on
# :38445, the BEFORE_BIN build on :38446. For each in turn, h2load (on
# CPU 1) makes N new TLS connections through it, 50 at a time, one request
# each ('Connection: close'), and the script prints the proxy's utime and
# stime from /proc per connection (µs; their sum is the scheduler's exact
# run time, the split between them is sampled at the tick), with its
# voluntary context switches per connection. The harness's "per CPU-s"
# rows for passthrough are dominated by the noise of a proxy at 20 % of a
# core; this adds the split between user space and kernel, and runs the
# builds side by side on the same terminator.
#
# Why half-close matters here: with 'Connection: close' the terminator
# closes first. nginx `stream` by default then closes both sides at once;
# snigate and HAProxy pass the end on (shutdown of the client's side) and
# wait for the client to end its own direction, which costs them a
# shutdown, a read and a wake-up more per connection. nginx with
# `proxy_half_close on` does what they do.
#
# With FLOOR_BIN (`cargo bench --bench passthrough_floor --no-run` prints
# its path), the least a tokio passthrough proxy does (benches/
# passthrough_floor.rs) runs on :38449 as "floor": what snigate spends
# above it is snigate's own, what it spends above nginx is tokio's.
#
# Run:   benches/cpu-passthrough.sh        (about 1.5 minutes per round)
#   env: N=20000 RUNS=3  SNIGATE_BIN=target/release/snigate  BEFORE_BIN=
#        FLOOR_BIN=
# Needs: nginx with libnginx-mod-stream, haproxy, h2load (nghttp2-client),
# openssl, curl, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
before="${BEFORE_BIN:-}"
n="${N:-20000}"
need nginx haproxy h2load openssl curl taskset
need_stream_module
dir="$(new_tmpdir snigate-cpupt)"
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=b.test -keyout "$dir/b.key" -out "$dir/b.crt" 2>/dev/null
echo hello >"$dir/s"
chmod 644 "$dir/s"
nginx_conf "$dir/backend" 4096 <<EOT
http {
$(nginx_http_basics "$dir")
  server { listen 127.0.0.1:39443 ssl; ssl_certificate $dir/b.crt; ssl_certificate_key $dir/b.key; root $dir; }
}
EOT
nginx_conf "$dir/stream" 4096 "load_module $STREAM_MODULE;" <<EOT
stream {
  server { listen 127.0.0.1:38444; ssl_preread on; proxy_pass 127.0.0.1:39443; }
  server { listen 127.0.0.1:38447; ssl_preread on; proxy_pass 127.0.0.1:39443; proxy_half_close on; }
}
EOT
cat >"$dir/haproxy.cfg" <<EOT
global
  nbthread 1
  maxconn 4096
  pidfile $dir/haproxy.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend pt
  bind 127.0.0.1:38448
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend be if { req.ssl_sni -i b.test }
  default_backend be
backend be
  server s 127.0.0.1:39443
EOT
start_nginx "$dir/backend" 1
start_nginx "$dir/stream" 0
taskset -c 0 haproxy -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
haproxy_pid=$!
PIDS+=("$haproxy_pid")

# snigate_on NAME BIN PORT: a passthrough snigate on CPU 0; sets LAST_PID.
LAST_PID=
snigate_on() {
    cat >"$dir/$1.toml" <<EOT
[runtime]
workers = 1
[log]
level = "warn"
[[listener]]
name = "pt"
bind = ["127.0.0.1:$3"]
mode = "passthrough"
default_upstream = "be"
[[upstream]]
name = "be"
servers = ["127.0.0.1:39443"]
EOT
    taskset -c 0 "$2" run -c "$dir/$1.toml" >"$dir/$1.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
targets=("nginx 38444" "nginx-hc 38447" "haproxy 38448 $haproxy_pid")
snigate_on snigate "$bin" 38445
targets+=("snigate 38445 $LAST_PID")
if [ -n "$before" ]; then
    snigate_on before "$before" 38446
    targets+=("before 38446 $LAST_PID")
fi
if [ -n "${FLOOR_BIN:-}" ]; then
    taskset -c 0 "$FLOOR_BIN" 127.0.0.1:38449 127.0.0.1:39443 >"$dir/floor.log" 2>&1 &
    PIDS+=("$!")
    targets+=("floor 38449 $!")
fi
get() { curl -sk -o /dev/null "https://127.0.0.1:$1/s"; }
for t in "${targets[@]}"; do
    read -r _ port _ <<<"$t"
    retry 100 0.1 get "$port" || { echo "nothing answers on port $port" >&2; exit 1; }
done
nginx_worker="$(pgrep -P "$(cat "$dir/stream.pid")" | head -1)"
targets[0]="nginx 38444 $nginx_worker"
targets[1]="nginx-hc 38447 $nginx_worker"

# measure NAME PORT PID: N connections through PORT; PID's CPU per connection.
measure() {
    cpu_per "$1" "$3" "$n" connection "$dir/$1.h2load" \
        taskset -c 1 h2load --h1 -n "$n" -c 50 -H 'Connection: close' "https://127.0.0.1:$2/s"
}
for _ in $(seq "${RUNS:-3}"); do
    for t in "${targets[@]}"; do
        # shellcheck disable=SC2086 # NAME PORT PID
        measure $t
    done
done
