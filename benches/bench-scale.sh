#!/usr/bin/env bash
# bench-snigate.sh with a hosting farm's configuration: the same three
# certificates of ../shared/bench/run.sh (a.test -> RSA, b.test -> ECDSA,
# anything else -> fallback) among 10,000 certificates, and 10,000 routes,
# 1,000 of them wildcards (benches/scale_config.py; the other certificates
# are minted once into $SCALE_DIR and kept). Every handshake and request of
# the harness then goes through the large certificate store and route table.
#
#   ../shared/bench/run.sh custom "$PWD/benches/bench-scale.sh" snigate-10k
#
# env: SCALE_CERTS=10000 SCALE_WILDCARDS=1000 SCALE_DIR=/tmp/snigate-scale-10k
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
certs="${BENCH_CERT_DIR:?run me from ../shared/bench/run.sh}"
scale_dir="${SCALE_DIR:-${TMPDIR:-/tmp}/snigate-scale-10k}"
conf="$(mktemp -d)/snigate-scale.toml"
python3 "$here/benches/scale_config.py" config \
  --certs "${SCALE_CERTS:-10000}" --wildcards "${SCALE_WILDCARDS:-1000}" \
  --dir "$scale_dir/certs" --bench-certs "$certs" --out "$conf" \
  --listen "${BENCH_LISTEN:-127.0.0.1:8443}" --backend "${BENCH_BACKEND:-127.0.0.1:8080}" \
  --log-level warn
exec "$bin" run -c "$conf"
