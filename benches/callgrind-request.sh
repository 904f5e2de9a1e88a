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
#        FLOOR_BIN: the least a tokio + rustls + hyper proxy does
#        (benches/request_floor.rs; `cargo bench --bench request_floor
#        --no-run` prints its path), traced the same way on :18450 over
#        HTTP/1.1.
# Needs: valgrind (callgrind_control), curl, nginx, a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
a="${A:-100}"
b="${B:-1100}"
need valgrind callgrind_control curl nginx
dir="$(new_tmpdir snigate-cg)"
trap cleanup EXIT

"$bin" gen-certs --dir "$dir/certs" --names a.test >/dev/null
answer='return 200 "hello world 19 B..\n";'
if [ -n "${BODY:-}" ]; then
    mkdir -p "$dir/www"
    head -c "$BODY" /dev/zero | tr '\0' x >"$dir/www/body"
    answer="root $dir/www; rewrite ^ /body break;"
fi
nginx_backend_http 127.0.0.1:18081 "$answer" | nginx_conf "$dir/backend" 1000
start_nginx "$dir/backend"
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
    snigate_https_conf 127.0.0.1:18446 127.0.0.1:18081 >"$dir/snigate.toml"
fi
valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$dir/cg.%p" \
    "$bin" run -c "$dir/snigate.toml" >"$dir/snigate.log" 2>&1 &
vg=$!
PIDS+=("$vg")
proto="--http1.1"
curl_n() { # PORT N
    a_test_get "$1" "$2" "$proto"
}
retry 300 0.2 curl_n 18446 1 || true
curl_n 18446 50 # warm-up: pools, tables, allocator
# per NAME PID PREFIX PORT [PROTO...]: instructions per keep-alive request,
# over each PROTO (curl's option; both HTTP/1.1 and h2 by default).
per() {
    local ia ib protos=("${@:5}")
    [ ${#protos[@]} -gt 0 ] || protos=(--http1.1 --http2)
    for proto in "${protos[@]}"; do
        ia="$(callgrind_count "$2" "$3" curl_n "$4" "$a")"
        ib="$(callgrind_count "$2" "$3" curl_n "$4" "$b")"
        echo "$1 ${proto#--}: instructions for $a requests $ia, for $b requests $ib;" \
            "per keep-alive request: $(( (ib - ia) / (b - a) ))"
    done
}
per snigate "$vg" cg 18446
if [ -n "${FLOOR_BIN:-}" ]; then
    valgrind --tool=callgrind --callgrind-out-file="$dir/floor.%p" \
        "$FLOOR_BIN" 127.0.0.1:18450 127.0.0.1:18081 "$dir/certs/a.test.crt" "$dir/certs/a.test.key" \
        >"$dir/floor.log" 2>&1 &
    floor_vg=$!
    PIDS+=("$floor_vg")
    proto="--http1.1"
    retry 300 0.2 curl_n 18450 1 || true
    curl_n 18450 50
    per floor "$floor_vg" floor 18450 --http1.1
fi
[ "${WITH_NGINX:-1}" = 1 ] || exit 0
# nginx as the same proxy (one process, upstream keep-alive pool), traced
# the same way, for comparison.
nginx_https_proxy_http 127.0.0.1:18449 127.0.0.1:18081 |
    nginx_conf "$dir/proxy" 1000 "master_process off;" "daemon off;"
valgrind --tool=callgrind --callgrind-out-file="$dir/ng.%p" \
    nginx -c "$dir/proxy.conf" -p "$dir" >"$dir/nginx.log" 2>&1 &
ng=$!
PIDS+=("$ng")
proto="--http1.1"
retry 300 0.2 curl_n 18449 1 || true
curl_n 18449 50
per nginx "$ng" ng 18449
