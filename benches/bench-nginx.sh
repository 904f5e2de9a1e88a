#!/usr/bin/env bash
# nginx as ../shared/bench/run.sh's proxy, with $WORKERS worker processes
# (run.sh's own `nginx` mode has one): the harness's configuration (a.test
# -> RSA, b.test -> ECDSA, anything else -> fallback; HTTP/1.1 to
# $BENCH_BACKEND over a keep-alive pool), in `custom` mode, so that
# benches/two-workers.sh can compare it with snigate at two workers.
#
#   WORKERS=2 PROXY_CPUS=0,1 ../shared/bench/run.sh custom "$PWD/benches/bench-nginx.sh" nginx-2w
#
# env: WORKERS=1; PROXY_CPUS=0,1 widens the harness's pinning (CPU 0).
set -euo pipefail
certs="${BENCH_CERT_DIR:?run me from ../shared/bench/run.sh}"
listen="${BENCH_LISTEN:-127.0.0.1:8443}"
backend="${BENCH_BACKEND:-127.0.0.1:8080}"
dir="$(mktemp -d /tmp/snigate-bench-nginx.XXXXXX)"
# nginx's workers may run unprivileged: the temp paths must be theirs.
chmod 755 "$dir"
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
  access_log off;
  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  ssl_protocols TLSv1.2 TLSv1.3;
  upstream backend {
    server $backend;
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen $listen ssl default_server backlog=4096;
    server_name _;
    ssl_certificate $certs/fallback.crt; ssl_certificate_key $certs/fallback.key;
    location / { proxy_pass http://backend; }
  }
  server {
    listen $listen ssl;
    server_name a.test;
    ssl_certificate $certs/rsa.crt; ssl_certificate_key $certs/rsa.key;
    location / { proxy_pass http://backend; }
  }
  server {
    listen $listen ssl;
    server_name b.test;
    ssl_certificate $certs/ecdsa.crt; ssl_certificate_key $certs/ecdsa.key;
    location / { proxy_pass http://backend; }
  }
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
