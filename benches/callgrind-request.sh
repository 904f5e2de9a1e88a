#!/usr/bin/env bash
# Instructions per proxied keep-alive request, counted by callgrind: a
# figure that does not move with the host's CPU speed, unlike req/s.
#
# What: an nginx backend (`GET /` -> 19 B) on 127.0.0.1:18081, and snigate
# (1 worker, https, a.test from `snigate gen-certs`, ECDSA) under
# `valgrind --tool=callgrind` on :18446. curl then sends A and then B
# requests, each batch on one keep-alive connection (one handshake each),
# over HTTP/1.1 and then over h2 (ALPN);
# the counters are zeroed before and dumped after each batch, and
# (instructions(B) - instructions(A)) / (B - A) is the cost of one request,
# the handshake and connection set-up cancelled out. The last dump is kept
# for `callgrind_annotate` when KEEP=1.
#
# Then nginx (1.22, one process, an upstream keep-alive pool) as the same
# proxy, traced the same way, for comparison (WITH_NGINX=0 skips it: not NGINX, which nginx reads).
#
# Run:   benches/callgrind-request.sh        (about 3 minutes)
#   env: A=100 B=1100  SNIGATE_BIN=target/release/snigate  KEEP=1
#        SCALE=N: a hosting farm's configuration instead (issue 15 goal 5,
#        benches/scale_config.py): N certificates and N routes, N/10 of them
#        wildcards, a.test among them; SCALE=3 is the same shape with only
#        a.test's routes, the baseline to compare with.
#        BODY=N: the backend answers N bytes (a file) instead of 19 (for the
#        64 KiB row: BODY=65536, with fewer requests: A=20 B=220).
# Needs: valgrind (callgrind_control), curl, nginx, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
a="${A:-100}"
b="${B:-1100}"
for tool in valgrind callgrind_control curl nginx; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
dir="$(mktemp -d /tmp/snigate-cg.XXXXXX)"
chmod 755 "$dir"
vg=""
ng=""
cleanup() {
    [ -n "$vg" ] && kill -TERM "$vg" 2>/dev/null || true
    [ -n "$ng" ] && kill -TERM "$ng" 2>/dev/null || true
    [ -f "$dir/backend.pid" ] && kill -TERM "$(cat "$dir/backend.pid")" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
answer='return 200 "hello world 19 B..\n";'
if [ -n "${BODY:-}" ]; then
    mkdir -p "$dir/www"
    head -c "$BODY" /dev/zero | tr '\0' x >"$dir/www/body"
    answer="root $dir/www; rewrite ^ /body break;"
fi
cat > "$dir/backend.conf" <<EOF
worker_processes 1;
pid $dir/backend.pid;
error_log $dir/backend-error.log warn;
events { worker_connections 1000; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:18081; location / { $answer } }
}
EOF
nginx -c "$dir/backend.conf" -p "$dir" -e "$dir/backend-error.log"
if [ -n "${SCALE:-}" ]; then
    # scale_config.py declares the harness's three certificates first:
    # here all three are a.test's.
    mkdir -p "$dir/bench"
    for n in rsa ecdsa fallback; do
        ln -s "$dir/certs/a.test.crt" "$dir/bench/$n.crt"
        ln -s "$dir/certs/a.test.key" "$dir/bench/$n.key"
    done
    python3 "$here/benches/scale_config.py" config --certs "$SCALE" --wildcards $((SCALE / 10)) \
        --dir "${SCALE_DIR:-${TMPDIR:-/tmp}/snigate-scale-$SCALE}/certs" --bench-certs "$dir/bench" \
        --out "$dir/snigate.toml" --listen 127.0.0.1:18446 --backend 127.0.0.1:18081 \
        --log-level warn >&2
else
cat > "$dir/snigate.toml" <<EOF
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
bind = ["127.0.0.1:18446"]
fallback_certificate = "a"
default_upstream = "backend"
[[upstream]]
name = "backend"
servers = ["127.0.0.1:18081"]
EOF
fi
valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$dir/cg.%p" \
    "$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
vg=$!
proto="--http1.1"
curl_n() { # PORT N
    local urls=() i
    for ((i = 0; i < $2; i++)); do urls+=("https://a.test:$1/"); done
    curl -s "$proto" --cacert "$dir/certs/ca.crt" --resolve "a.test:$1:127.0.0.1" "${urls[@]}" >/dev/null
}
for _ in $(seq 300); do curl_n 18446 1 2>/dev/null && break; sleep 0.2; done
curl_n 18446 50 # warm-up: pools, tables, allocator
# instructions PID PREFIX PORT N: what the traced process spends on N requests.
instructions() {
    callgrind_control -z "$1" >/dev/null
    curl_n "$3" "$4"
    callgrind_control -d "$1" >/dev/null
    local dump
    dump="$(ls -t "$dir/$2".* | head -1)"
    awk '/^summary:|^totals:/ { print $2; exit }' "$dump"
}
# per NAME PID PREFIX PORT: instructions per keep-alive request, both protocols.
per() {
    local ia ib
    for proto in --http1.1 --http2; do
        ia="$(instructions "$2" "$3" "$4" "$a")"
        ib="$(instructions "$2" "$3" "$4" "$b")"
        echo "$1 ${proto#--}: instructions for $a requests $ia, for $b requests $ib;" \
            "per keep-alive request: $(( (ib - ia) / (b - a) ))"
    done
}
per snigate "$vg" cg 18446
[ "${WITH_NGINX:-1}" = 1 ] || exit 0
# nginx as the same proxy (one process, upstream keep-alive pool), traced
# the same way, for comparison.
cat > "$dir/proxy.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $dir/proxy.pid;
error_log $dir/proxy-error.log warn;
events { worker_connections 1000; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  keepalive_requests 100000000;
  upstream backend { server 127.0.0.1:18081; keepalive 16; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen 127.0.0.1:18449 ssl http2;
    ssl_certificate $dir/certs/a.test.crt; ssl_certificate_key $dir/certs/a.test.key;
    location / { proxy_pass http://backend; }
  }
}
EOF
valgrind --tool=callgrind --callgrind-out-file="$dir/ng.%p" \
    nginx -c "$dir/proxy.conf" -p "$dir" >"$dir/nginx.log" 2>&1 &
ng=$!
proto="--http1.1"
for _ in $(seq 300); do curl_n 18449 1 2>/dev/null && break; sleep 0.2; done
curl_n 18449 50
per nginx "$ng" ng 18449
