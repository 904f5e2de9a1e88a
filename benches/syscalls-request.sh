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
# Needs: strace, curl, nginx, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
n="${N:-2000}"
for tool in strace curl nginx; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
dir="$(mktemp -d /tmp/snigate-sysreq.XXXXXX)"
chmod 755 "$dir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for f in "$dir"/*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
temps="client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;"
cat > "$dir/backend.conf" <<NGINX
worker_processes 1;
pid $dir/backend.pid;
error_log $dir/backend-error.log warn;
events { worker_connections 1000; }
http {
  access_log off;
  $temps
  keepalive_requests 100000000;
  server { listen 127.0.0.1:18082; location / { return 200 "hello world 19 B..\n"; } }
}
NGINX
nginx -c "$dir/backend.conf" -p "$dir" -e "$dir/backend-error.log"
cat > "$dir/proxy.conf" <<NGINX
worker_processes 1;
pid $dir/proxy.pid;
error_log $dir/proxy-error.log warn;
events { worker_connections 1000; }
http {
  access_log off;
  $temps
  keepalive_requests 100000000;
  upstream backend { server 127.0.0.1:18082; keepalive 16; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen 127.0.0.1:18448 ssl http2;
    ssl_certificate $dir/certs/a.test.crt; ssl_certificate_key $dir/certs/a.test.key;
    location / { proxy_pass http://backend; }
  }
}
NGINX
nginx -c "$dir/proxy.conf" -p "$dir" -e "$dir/proxy-error.log"
cat > "$dir/snigate.toml" <<TOML
[runtime]
workers = 1
[log]
level = "warn"
[[certificate]]
name = "a"
chain = "$dir/certs/a.test.crt"
key = "$dir/certs/a.test.key"
[[listener]]
name = "main"
bind = ["127.0.0.1:18447"]
fallback_certificate = "a"
default_upstream = "backend"
[[upstream]]
name = "backend"
servers = ["127.0.0.1:18082"]
TOML
"$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
pids+=($!)
snigate_pid=$!

# curl_n PORT PROTO N: N requests on one connection.
curl_n() {
    local urls=() i
    for ((i = 0; i < $3; i++)); do urls+=("https://a.test:$1/"); done
    curl -sf "$2" --cacert "$dir/certs/ca.crt" --resolve "a.test:$1:127.0.0.1" "${urls[@]}" >/dev/null
}
for port in 18447 18448; do
    for _ in $(seq 100); do curl_n "$port" --http1.1 1 2>/dev/null && break; sleep 0.1; done
    curl_n "$port" --http1.1 1 || { echo "nothing answers on port $port" >&2; exit 1; }
done

# count NAME PID PORT PROTO: N requests through PORT with strace on PID.
count() {
    local name="$1" pid="$2" port="$3" proto="$4" out="$dir/$1$4.strace"
    curl_n "$port" "$proto" 50 # warm-up: backend pool
    strace -f -c -o "$out" -p "$pid" 2>/dev/null &
    local tracer=$!
    sleep 1
    curl_n "$port" "$proto" "$n" || { echo "requests through $name failed" >&2; exit 1; }
    sleep 0.5
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    echo "== $name ${proto#--}: system calls per request ($n requests, one connection)"
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
            printf "  %-14s %6.2f\n", $NF, $4 / n; sum += $4 }
         END { printf "  %-14s %6.2f\n", "total", sum / n }' "$out"
}
nginx_worker="$(pgrep -P "$(cat "$dir/proxy.pid")" | head -1)"
for proto in --http1.1 --http2; do
    count snigate "$snigate_pid" 18447 "$proto"
    count nginx "$nginx_worker" 18448 "$proto"
done
