#!/usr/bin/env bash
# System calls per passthrough connection: snigate `mode = "passthrough"`
# against nginx `stream` + `ssl_preread`, with the same client.
#
# What: an nginx (one worker) serves as TLS terminator (a.test, from
# `snigate gen-certs`) on 127.0.0.1:18443 and as plain backend on :18080.
# In front of it, on their own ports, snigate (1 worker) and nginx stream
# (1 worker) pass raw TLS through by SNI. For each, `strace -f -c` is
# attached to the proxy while curl makes N HTTPS requests through it, one
# connection each (SNI a.test, chain verified), and the script prints the
# proxy's system calls per connection, by call. A standing one-second timer
# of snigate's adds about 2 calls a second, which is in the counts.
#
# Run:   benches/syscalls-passthrough.sh          (about 30 s)
#   env: N=100  SNIGATE_BIN=target/release/snigate  KEEP=1 (keep the folder)
# Needs: strace, curl, nginx with libnginx-mod-stream, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
n="${N:-100}"
module=/usr/lib/nginx/modules/ngx_stream_module.so
for tool in strace curl nginx; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -f "$module" ] || { echo "needs libnginx-mod-stream" >&2; exit 1; }

dir="$(mktemp -d /tmp/snigate-sys.XXXXXX)"
chmod 755 "$dir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for f in "$dir"/*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
cat > "$dir/term.conf" <<EOF
worker_processes 1;
pid $dir/term.pid;
error_log $dir/term-error.log warn;
events { worker_connections 4000; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  server { listen 127.0.0.1:18080; location / { return 200 "hello world\n"; } }
  server {
    listen 127.0.0.1:18443 ssl;
    ssl_certificate $dir/certs/a.test.crt; ssl_certificate_key $dir/certs/a.test.key;
    location / { return 200 "hello world\n"; }
  }
}
EOF
nginx -c "$dir/term.conf" -p "$dir" -e "$dir/term-error.log"

cat > "$dir/stream.conf" <<EOF
load_module $module;
worker_processes 1;
pid $dir/stream.pid;
error_log $dir/stream-error.log warn;
events { worker_connections 4000; }
stream {
  server {
    listen 127.0.0.1:18445;
    ssl_preread on;
    proxy_pass 127.0.0.1:18443;
  }
}
EOF
nginx -c "$dir/stream.conf" -p "$dir" -e "$dir/stream-error.log"

cat > "$dir/snigate.toml" <<EOF
[runtime]
workers = 1
[log]
level = "warn"
[[listener]]
name = "p"
mode = "passthrough"
bind = ["127.0.0.1:18444"]
default_upstream = "t"
[[upstream]]
name = "t"
servers = ["127.0.0.1:18443"]
EOF
"$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
pids+=($!)
snigate_pid=$!

wait_port() {
    for _ in $(seq 100); do
        curl -s -o /dev/null --cacert "$dir/certs/ca.crt" --resolve "a.test:$1:127.0.0.1" "https://a.test:$1/" && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    exit 1
}
wait_port 18444
wait_port 18445

# count NAME PID PORT: N connections through PORT with strace on PID.
count() {
    local name="$1" pid="$2" port="$3" out="$dir/$1.strace"
    strace -f -c -o "$out" -p "$pid" 2>/dev/null &
    local tracer=$!
    sleep 1
    for _ in $(seq "$n"); do
        curl -s -o /dev/null --cacert "$dir/certs/ca.crt" --resolve "a.test:$port:127.0.0.1" "https://a.test:$port/" \
            || { echo "a request through $name failed" >&2; exit 1; }
    done
    sleep 0.5
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    echo "== $name: system calls per connection ($n connections)"
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
            printf "  %-14s %6.2f\n", $NF, $4 / n; sum += $4 }
         END { printf "  %-14s %6.2f\n", "total", sum / n }' "$out"
}
count snigate "$snigate_pid" 18444
count nginx-stream "$(pgrep -P "$(cat "$dir/stream.pid")" | head -1)" 18445
