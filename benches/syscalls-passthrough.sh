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
# With FLOOR_BIN (see benches/passthrough_floor.rs), the least a tokio
# passthrough proxy does is counted too, on :18446.
#
# Run:   benches/syscalls-passthrough.sh          (about 30 s)
#   env: N=100  SNIGATE_BIN=target/release/snigate  KEEP=1 (keep the folder)
#        FLOOR_BIN=
# Needs: strace, nstat (iproute2), curl, nginx with libnginx-mod-stream, a
# release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
n="${N:-100}"
need strace nstat curl nginx
need_stream_module

dir="$(new_tmpdir snigate-sys)"
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
nginx_conf "$dir/term" 4000 <<EOF
http {
$(nginx_http_basics "$dir")
  server { listen 127.0.0.1:18080; location / { return 200 "hello world\n"; } }
  server {
    listen 127.0.0.1:18443 ssl;
    ssl_certificate $dir/certs/a.test.crt; ssl_certificate_key $dir/certs/a.test.key;
    location / { return 200 "hello world\n"; }
  }
}
EOF
start_nginx "$dir/term"

nginx_conf "$dir/stream" 4000 "load_module $STREAM_MODULE;" <<EOF
stream {
  server {
    listen 127.0.0.1:18445;
    ssl_preread on;
    proxy_pass 127.0.0.1:18443;
  }
}
EOF
start_nginx "$dir/stream"

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
snigate_pid=$!
PIDS+=("$snigate_pid")

ports=(18444 18445)
if [ -n "${FLOOR_BIN:-}" ]; then
    "$FLOOR_BIN" 127.0.0.1:18446 127.0.0.1:18443 >"$dir/floor.log" 2>&1 &
    floor_pid=$!
    PIDS+=("$floor_pid")
    ports+=(18446)
fi
for port in "${ports[@]}"; do
    retry 100 0.1 a_test_get "$port" 1 || { echo "nothing answers on port $port" >&2; exit 1; }
done

# connections NAME PORT: N connections through PORT, one request each.
connections() {
    for _ in $(seq "$n"); do
        a_test_get "$2" 1 || { echo "a request through $1 failed" >&2; exit 1; }
    done
}
# count NAME PID PORT: N connections through PORT with strace on PID.
count() {
    syscalls_per "$2" "$dir/$1.strace" "$n" "== $1: system calls per connection ($n connections)" \
        connections "$1" "$3"
}
count snigate "$snigate_pid" 18444
count nginx-stream "$(pgrep -P "$(cat "$dir/stream.pid")" | head -1)" 18445
if [ -n "${FLOOR_BIN:-}" ]; then count floor "$floor_pid" 18446; fi
