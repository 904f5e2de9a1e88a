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
#        RESUME=1: the https connections resume a TLS 1.3 session: one curl
#        makes each batch, every request closing its connection, so all but
#        the first connection of a batch resume (the first cancels out in
#        B - A); passthrough is skipped.
#        FLOOR_BIN: the least a tokio passthrough proxy does
#        (benches/passthrough_floor.rs; `cargo bench --bench
#        passthrough_floor --no-run` prints its path) is counted too, on
#        :18490 (FLOOR_TIMERS=1 passes through to it).
# Needs: valgrind (callgrind_control), curl, nginx with libnginx-mod-stream,
# a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
a="${A:-20}"
b="${B:-120}"
need valgrind callgrind_control curl nginx
need_stream_module
dir="$(new_tmpdir snigate-cgconn)"
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test --key "${KEY:-ecdsa}" >/dev/null
crt="$dir/certs/a.test.crt" key="$dir/certs/a.test.key"
nginx_conf "$dir/side" 1000 <<NGINX
http {
$(nginx_http_basics "$dir")
  server { listen 127.0.0.1:18084; location / { return 200 "hello world 19 B..\n"; } }
  server {
    listen 127.0.0.1:18085 ssl;
    ssl_certificate $crt; ssl_certificate_key $key;
    location / { return 200 "hello world 19 B..\n"; }
  }
}
NGINX
start_nginx "$dir/side"
nginx_conf "$dir/proxy" 1000 "load_module $STREAM_MODULE;" "master_process off;" "daemon off;" <<NGINX
http {
$(nginx_http_basics "$dir")
$(nginx_upstream_pool 127.0.0.1:18084)
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
{
    snigate_https_conf 127.0.0.1:18486 127.0.0.1:18084 https
    cat <<TOML
[[listener]]
name = "passthrough"
mode = "passthrough"
bind = ["127.0.0.1:18487"]
default_upstream = "terminator"
[[upstream]]
name = "terminator"
servers = ["127.0.0.1:18085"]
TOML
} >"$dir/snigate.toml"
valgrind --tool=callgrind --callgrind-out-file="$dir/snigate.%p" \
    "$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
snigate_vg=$!
PIDS+=("$snigate_vg")
valgrind --tool=callgrind --callgrind-out-file="$dir/nginx.%p" \
    nginx -c "$dir/proxy.conf" -p "$dir" >"$dir/nginx.log" 2>&1 &
nginx_vg=$!
PIDS+=("$nginx_vg")
floor_vg=
if [ -n "${FLOOR_BIN:-}" ]; then
    valgrind --tool=callgrind --callgrind-out-file="$dir/floor.%p" \
        "$FLOOR_BIN" 127.0.0.1:18490 127.0.0.1:18085 >"$dir/floor.log" 2>&1 &
    floor_vg=$!
    PIDS+=("$floor_vg")
fi

one() { # PORT: one connection, one request
    a_test_get "$1" 1 -f --http1.1
}
connections() { # PORT N: N connections, one request each
    if [ "${RESUME:-0}" = 1 ]; then
        a_test_get "$1" "$2" -f --http1.1 -H 'Connection: close'
    else
        for _ in $(seq "$2"); do one "$1"; done
    fi
}
ports=(18486 18487 18488 18489)
if [ -n "$floor_vg" ]; then ports+=(18490); fi
for port in "${ports[@]}"; do
    retry 300 0.2 one "$port" || { echo "nothing answers on port $port" >&2; exit 1; }
    connections "$port" 10 # warm-up: pools, tables, allocator
done
per() { # VG PREFIX PORT
    local ia ib
    ia="$(callgrind_count "$1" "$2" connections "$3" "$a")"
    ib="$(callgrind_count "$1" "$2" connections "$3" "$b")"
    echo $(( (ib - ia) / (b - a) ))
}
s_https="$(per "$snigate_vg" snigate 18486)"
n_https="$(per "$nginx_vg" nginx 18488)"
ratio() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.2f", s / n }'; }
echo "instructions per new connection (user space; $a and $b connections):"
if [ "${RESUME:-0}" = 1 ]; then
    echo "  https, resumed handshake + 1 request: snigate $s_https, nginx $n_https (snigate / nginx $(ratio "$s_https" "$n_https"))"
    exit 0
fi
s_pass="$(per "$snigate_vg" snigate 18487)"
n_pass="$(per "$nginx_vg" nginx 18489)"
echo "  https, full handshake + 1 request: snigate $s_https, nginx $n_https (snigate / nginx $(ratio "$s_https" "$n_https"))"
echo "  passthrough:                       snigate $s_pass, nginx stream $n_pass (snigate / nginx $(ratio "$s_pass" "$n_pass"))"
if [ -n "$floor_vg" ]; then
    f_pass="$(per "$floor_vg" floor 18490)"
    echo "  passthrough floor (benches/passthrough_floor.rs): $f_pass (snigate / floor $(ratio "$s_pass" "$f_pass"))"
fi
