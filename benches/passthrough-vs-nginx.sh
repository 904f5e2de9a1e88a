#!/usr/bin/env bash
# Passthrough bulk copy: snigate `mode = "passthrough"` against nginx
# `stream { ssl_preread on; proxy_pass }`, both in front of the same nginx
# https backend. Proxies on CPU 0 with one worker; backend and wrk on CPU 1.
# Prints req/s, MB/s and the proxy's CPU seconds per 10 s run.
#
#   benches/passthrough-vs-nginx.sh [RUNS]
#
# env: SNIGATE_BIN=target/release/snigate  KEEP=1 (keep the temporary folder)
# Needs (Debian): nginx, libnginx-mod-stream, wrk, openssl; a release build.
# All traffic on 127.0.0.1 (ports 19443, 18444, 18445).
set -euo pipefail
runs="${1:-2}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
need_stream_module
# nginx's workers run unprivileged: the folder is theirs to traverse
dir="$(new_tmpdir snigate-ptvn)"
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=b.test -keyout "$dir/b.key" -out "$dir/b.crt" 2>/dev/null
head -c 1048576 /dev/urandom > "$dir/1m"
head -c 65536 /dev/urandom > "$dir/64k"
# ... and the files theirs to read.
chmod 644 "$dir/1m" "$dir/64k"

nginx_conf "$dir/backend" 4096 <<EOF
http {
$(nginx_http_basics "$dir")
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19443 ssl; ssl_certificate $dir/b.crt; ssl_certificate_key $dir/b.key; root $dir; }
}
EOF
nginx_conf "$dir/stream" 4096 "load_module $STREAM_MODULE;" <<EOF
stream { server { listen 127.0.0.1:18444; ssl_preread on; proxy_pass 127.0.0.1:19443; } }
EOF
cat > "$dir/snigate.toml" <<EOF
[runtime]
workers = 1
[log]
level = "warn"
[timeouts]
client_idle = "300s"
[[listener]]
name = "pt"
bind = ["127.0.0.1:18445"]
mode = "passthrough"
default_upstream = "be"
[[upstream]]
name = "be"
servers = ["127.0.0.1:19443"]
EOF

start_nginx "$dir/backend" 1
start_nginx "$dir/stream" 0
taskset -c 0 "$bin" run -c "$dir/snigate.toml" > "$dir/snigate.log" 2>&1 &
snigate=$!
PIDS+=("$snigate")
for _ in $(seq 50); do
    curl -sk -o /dev/null https://127.0.0.1:18445/64k && curl -sk -o /dev/null https://127.0.0.1:18444/64k && break
    sleep 0.1
done
nginx_worker="$(pgrep -P "$(cat "$dir/stream.pid")" | head -1)"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # NAME PORT PID PATH
    local t0 t1 out
    t0=$(ticks "$3")
    out=$(taskset -c 1 wrk -t1 -c32 -d10s "https://127.0.0.1:$2$4" 2>&1)
    if grep -q "Non-2xx" <<<"$out"; then
        echo "$1 $4: non-2xx answers; the setup is broken" >&2
        exit 1
    fi
    t1=$(ticks "$3")
    printf '%-8s %-4s req/s %10s  transfer/s %10s  proxy CPU s %s\n' "$1" "$4" \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk '/Transfer\/sec/ {print $2}' <<<"$out")" \
        "$(echo "scale=2; ($t1 - $t0) / $(getconf CLK_TCK)" | bc)"
}
for _ in $(seq "$runs"); do
    for path in /1m /64k; do
        measure nginx 18444 "$nginx_worker" "$path"
        measure snigate 18445 "$snigate" "$path"
    done
done
