#!/usr/bin/env bash
# Starts snigate the way ../shared/bench/run.sh's `custom` mode expects:
# TLS on $BENCH_LISTEN (127.0.0.1:8443), a.test -> RSA, b.test -> ECDSA,
# anything else -> fallback, HTTP/1.1 to $BENCH_BACKEND, one worker thread.
#
#   ../shared/bench/run.sh custom "$PWD/benches/bench-snigate.sh" snigate
#
# env: WORKERS=1 (worker threads); PROXY_CPUS=0,1 widens the harness's
# pinning to those CPUs (benches/two-workers.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
certs="${BENCH_CERT_DIR:?run me from ../shared/bench/run.sh}"
conf="$(mktemp -d)/snigate-bench.toml"
cat > "$conf" <<TOML
[runtime]
workers = ${WORKERS:-1}

[log]
level = "warn"

[timeouts]
client_idle = "300s"

[[certificate]]
name = "rsa"
chain = "$certs/rsa.crt"
key = "$certs/rsa.key"

[[certificate]]
name = "ecdsa"
chain = "$certs/ecdsa.crt"
key = "$certs/ecdsa.key"

[[certificate]]
name = "fallback"
chain = "$certs/fallback.crt"
key = "$certs/fallback.key"

[[listener]]
name = "bench"
bind = ["${BENCH_LISTEN:-127.0.0.1:8443}"]
fallback_certificate = "fallback"
default_upstream = "backend"
alpn = ["http/1.1"]
# Every load generator connects from 127.0.0.1: no per-address limit.
max_connections_per_ip = 0

[[upstream]]
name = "backend"
servers = ["${BENCH_BACKEND:-127.0.0.1:8080}"]
TOML
if [ -n "${PROXY_CPUS:-}" ]; then
    exec taskset -c "$PROXY_CPUS" "$bin" run -c "$conf"
fi
exec "$bin" run -c "$conf"
