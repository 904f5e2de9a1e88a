#!/usr/bin/env bash
# nginx as ../shared/bench/run.sh's proxy, with $WORKERS worker processes
# (run.sh's own `nginx` mode has one): the harness's configuration (a.test
# -> RSA, b.test -> ECDSA, anything else -> fallback; HTTP/1.1 to
# $BENCH_BACKEND over a keep-alive pool; nginx_harness_proxy in
# benches/lib.sh), in `custom` mode, so that benches/two-workers.sh can
# compare it with snigate at two workers.
#
#   WORKERS=2 PROXY_CPUS=0,1 ../shared/bench/run.sh custom "$PWD/benches/bench-nginx.sh" nginx-2w
#
# env: WORKERS=1; PROXY_CPUS=0,1 widens the harness's pinning (CPU 0).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh" # new_tmpdir, nginx_http_basics, nginx_harness_proxy
certs="${BENCH_CERT_DIR:?run me from ../shared/bench/run.sh}"
listen="${BENCH_LISTEN:-127.0.0.1:8443}"
backend="${BENCH_BACKEND:-127.0.0.1:8080}"
# nginx's workers may run unprivileged: the temp paths must be theirs.
dir="$(new_tmpdir snigate-bench-nginx)"
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<NGINX
worker_processes ${WORKERS:-1};
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 19000; }
http {
$(nginx_http_basics "$dir/tmp")
$(nginx_harness_proxy "$listen" "$backend" "$certs")
}
NGINX
cmd=(nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log")
if [ -n "${PROXY_CPUS:-}" ]; then
    cmd=(taskset -c "$PROXY_CPUS" "${cmd[@]}")
fi
# Not exec: the temporary folder goes when nginx does (TERM from the harness
# reaches nginx, which is in this session, and then this shell).
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
"${cmd[@]}" &
child=$!
wait "$child" || true
wait "$child" 2>/dev/null || true
rm -rf "$dir"
