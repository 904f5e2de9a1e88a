#!/usr/bin/env bash
# Instructions per new connection, counted by callgrind, for snigate and
# nginx side by side: https (a full TLS 1.3 handshake, ECDSA, and one
# proxied request) and passthrough (nginx `stream` + `ssl_preread`: the
# ClientHello read, an upstream connection, the bytes copied both ways).
# A figure that does not move with the host, unlike connections per
# CPU-second (issue 15 goals 3 and 4); it counts user space only (system
# calls: benches/syscalls-passthrough.sh).
#
# What: an nginx (not traced) serves as plain backend on 127.0.0.1:18084
# and as TLS terminator (a.test, from `snigate gen-certs`) on :18085. Under
# `valgrind --tool=callgrind`: snigate (1 worker) with an https listener on
# :18486 (to the backend) and a passthrough listener on :18487 (to the
# terminator); nginx (1 process) with the same two on :18488 and :18489.
# For each, curl makes A and then B connections (one request each, a new
# curl each time: no session to resume); counters are zeroed before and
# dumped after each batch, and (instructions(B) - instructions(A)) / (B - A)
# is the cost of one connection. valgrind hides SHA-NI and AVX-512 from both
# programs, so hashing costs more here than on the host, for both.
#
# Run:   benches/callgrind-connection.sh     (about 4 minutes)
#   env: A=20 B=120  SNIGATE_BIN=target/release/snigate  KEEP=1
#        KEY=rsa: RSA-2048 certificates (default ecdsa, P-256)
# Needs: valgrind (callgrind_control), curl, nginx with libnginx-mod-stream,
# a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
a="${A:-20}"
b="${B:-120}"
module=/usr/lib/nginx/modules/ngx_stream_module.so
for tool in valgrind callgrind_control curl nginx; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -f "$module" ] || { echo "needs libnginx-mod-stream" >&2; exit 1; }
dir="$(mktemp -d /tmp/snigate-cgconn.XXXXXX)"
chmod 755 "$dir"
traced=()
cleanup() {
    for p in "${traced[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -f "$dir/side.pid" ] && kill -TERM "$(cat "$dir/side.pid")" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test --key "${KEY:-ecdsa}" >/dev/null
crt="$dir/certs/a.test.crt" key="$dir/certs/a.test.key"
temps="client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;"
cat > "$dir/side.conf" <<NGINX
worker_processes 1;
pid $dir/side.pid;
error_log $dir/side-error.log warn;
events { worker_connections 1000; }
http {
  access_log off;
  $temps
  server { listen 127.0.0.1:18084; location / { return 200 "hello world 19 B..\n"; } }
  server {
    listen 127.0.0.1:18085 ssl;
    ssl_certificate $crt; ssl_certificate_key $key;
    location / { return 200 "hello world 19 B..\n"; }
  }
}
NGINX
nginx -c "$dir/side.conf" -p "$dir" -e "$dir/side-error.log"
cat > "$dir/proxy.conf" <<NGINX
load_module $module;
worker_processes 1;
master_process off;
daemon off;
pid $dir/proxy.pid;
error_log $dir/proxy-error.log warn;
events { worker_connections 1000; }
http {
  access_log off;
  $temps
  upstream backend { server 127.0.0.1:18084; keepalive 16; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen 127.0.0.1:18488 ssl;
    ssl_certificate $crt; ssl_certificate_key $key;
    location / { proxy_pass http://backend; }
  }
}
stream {
  server { listen 127.0.0.1:18489; ssl_preread on; proxy_pass 127.0.0.1:18085; }
}
NGINX
cat > "$dir/snigate.toml" <<TOML
[runtime]
workers = 1
[log]
level = "warn"
[[certificate]]
name = "a"
chain = "$crt"
key = "$key"
[[listener]]
name = "https"
bind = ["127.0.0.1:18486"]
fallback_certificate = "a"
default_upstream = "backend"
[[listener]]
name = "passthrough"
mode = "passthrough"
bind = ["127.0.0.1:18487"]
default_upstream = "terminator"
[[upstream]]
name = "backend"
servers = ["127.0.0.1:18084"]
[[upstream]]
name = "terminator"
servers = ["127.0.0.1:18085"]
TOML
valgrind --tool=callgrind --callgrind-out-file="$dir/snigate.%p" \
    "$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
traced+=($!)
snigate_vg=$!
valgrind --tool=callgrind --callgrind-out-file="$dir/nginx.%p" \
    nginx -c "$dir/proxy.conf" -p "$dir" >"$dir/nginx.log" 2>&1 &
traced+=($!)
nginx_vg=$!

one() { # PORT: one connection, one request
    curl -sf -o /dev/null --http1.1 --cacert "$dir/certs/ca.crt" --resolve "a.test:$1:127.0.0.1" "https://a.test:$1/"
}
for port in 18486 18487 18488 18489; do
    for _ in $(seq 300); do one "$port" 2>/dev/null && break; sleep 0.2; done
    one "$port" || { echo "nothing answers on port $port" >&2; exit 1; }
    for _ in $(seq 10); do one "$port"; done # warm-up: pools, tables, allocator
done
# instructions VG PREFIX PORT N: what the traced process spends on N connections.
instructions() {
    callgrind_control -z "$1" >/dev/null
    for _ in $(seq "$4"); do one "$3"; done
    callgrind_control -d "$1" >/dev/null
    local dump
    dump="$(ls -t "$dir/$2".* | head -1)"
    awk '/^summary:|^totals:/ { print $2; exit }' "$dump"
}
per() { # VG PREFIX PORT
    local ia ib
    ia="$(instructions "$1" "$2" "$3" "$a")"
    ib="$(instructions "$1" "$2" "$3" "$b")"
    echo $(( (ib - ia) / (b - a) ))
}
s_https="$(per "$snigate_vg" snigate 18486)"
n_https="$(per "$nginx_vg" nginx 18488)"
s_pass="$(per "$snigate_vg" snigate 18487)"
n_pass="$(per "$nginx_vg" nginx 18489)"
ratio() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.2f", s / n }'; }
echo "instructions per new connection (user space; $a and $b connections):"
echo "  https, full handshake + 1 request: snigate $s_https, nginx $n_https (snigate / nginx $(ratio "$s_https" "$n_https"))"
echo "  passthrough:                       snigate $s_pass, nginx stream $n_pass (snigate / nginx $(ratio "$s_pass" "$n_pass"))"
