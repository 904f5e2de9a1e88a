#!/usr/bin/env bash
# Configuration size: 10,000 certificates and 10,000 routes (1,000 of them
# wildcards) against 3 of each.
#
# What: benches/scale_config.py mints the certificates once (one lab CA, one
# shared ECDSA P-256 leaf key; kept in $SCALE_DIR) and writes both
# configurations (one listener, 1 worker thread, log level info).  Then,
# ROUNDS times, alternating small and large, it starts snigate (pinned to
# CPU 0 when taskset exists) and measures:
#   start    wall clock from exec to the "listening" log line (the socket
#            accepts from then on), and the times snigate logs: "configuration
#            loaded in N ms: ..." and "certificates inspected in N ms"
#            (certificate hygiene, which at start runs before serving)
#   RSS      VmRSS once listening, and again after the reload
#   reload   SIGHUP to the "reloaded" log line (wall clock, polled every
#            10 ms: the new state serves from then on), and the times logged
#            for it (its hygiene runs after the swap, on a blocking thread)
# and checks that sampled SNI names (exact names, names below wildcards,
# an unknown name) get the right certificate, chain and host name verified.
# It prints the medians per size.
#
# With THROUGHPUT=1 it then runs ../shared/bench/run.sh `custom` for
# benches/bench-scale.sh twice over, alternately: with the harness's 3
# certificates and a route for each name (SCALE_CERTS=3, the baseline: every
# request goes through a route and its metrics, as in the large one), and
# with the harness's 3 certificates among 10,000 and 10,000 routes, PASSES
# times each (RUNS=1, no direct rows: about 2.5 minutes a run), and prints
# their rows: compare the "per CPU-s of target" columns.
#
# Run:   benches/scale-10k.sh                  (about 1 minute; first run
#                                               adds ~5 s to mint)
#        THROUGHPUT=1 benches/scale-10k.sh     (+ about 10 minutes)
#   env: ROUNDS=3 CERTS=10000 WILDCARDS=1000 SCALE_DIR=/tmp/snigate-scale-10k
#        PASSES=2 SNIGATE_BIN=target/release/snigate KEEP=1 (keep the logs)
#
# Needs: a release build, python3 with python3-cryptography, ss.  Every
# process it starts runs in its own session and is stopped by its saved id.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh" # log, die, sessions, free_port
bin="${SNIGATE_BIN:-$here/target/release/snigate}"
gen="$here/benches/scale_config.py"
ROUNDS=${ROUNDS:-3}
CERTS=${CERTS:-10000}
WILDCARDS=${WILDCARDS:-1000}
PASSES=${PASSES:-2}
SCALE_DIR="${SCALE_DIR:-${TMPDIR:-/tmp}/snigate-scale-10k}"

[ -x "$bin" ] || die "no snigate binary at $bin (cargo build --release)"
python3 -c 'import cryptography' 2>/dev/null || die "python3-cryptography missing (apt-get install python3-cryptography)"
command -v ss >/dev/null || die "ss missing"
pin=(); command -v taskset >/dev/null && pin=(taskset -c 0)

TMP=$(mktemp -d /tmp/snigate-scale.XXXXXX)
trap 'end_sessions "$TMP"' EXIT INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
accepting() { plain "$1" | grep -q ' listening listener='; }
# The time in the Nth "PHRASE N ms" line of a log.
logged_ms() { plain "$1" | grep -o "$2 [0-9]* ms" | sed -n "${3}p" | grep -o '[0-9]*' | head -1; }
loaded_ms() { logged_ms "$1" 'configuration loaded in' "$2"; }
inspected_ms() { logged_ms "$1" 'certificates inspected in' "$2"; }

log "certificates: $CERTS (of which $WILDCARDS wildcards) in $SCALE_DIR"
t=$(now_ms)
python3 "$gen" certs --certs "$CERTS" --wildcards "$WILDCARDS" --dir "$SCALE_DIR/large"
python3 "$gen" certs --certs 3 --wildcards 0 --dir "$SCALE_DIR/small"
log "minted (or kept) in $(($(now_ms) - t)) ms"
BACKEND_PORT=$(free_port)   # nothing listens there: start and reload need no backend

# One measurement: start, RSS, reload, RSS, SNI checks. Appends a TSV row.
measure() {  # SIZE ROUND
  local size=$1 round=$2 dir certs wild port conf logf sid pid t0 t_listen i t_hup
  if [ "$size" = large ]; then certs=$CERTS wild=$WILDCARDS; else certs=3 wild=0; fi
  dir="$SCALE_DIR/$size"
  port=$(free_port)
  conf="$TMP/$size-$round.toml"
  logf="$TMP/$size-$round.log"
  python3 "$gen" config --certs "$certs" --wildcards "$wild" --dir "$dir" --out "$conf" \
    --listen "127.0.0.1:$port" --backend "127.0.0.1:$BACKEND_PORT" 2>/dev/null
  t0=$(now_ms)
  start_session "$logf" "${pin[@]}" "$bin" run -c "$conf"
  sid=$LAST
  # Accepting: the "listening" line comes once the socket serves (after the
  # start's certificate hygiene), not when it is bound.
  for i in $(seq 3000); do accepting "$logf" && break; sleep 0.01; done
  accepting "$logf" || { tail -5 "$logf" >&2; die "$size: snigate did not listen"; }
  t_listen=$(($(now_ms) - t0))
  listening "$port" || die "$size: no socket on $port"
  pid=$sid
  local rss_start; rss_start=$(rss_kib "$pid")
  python3 - "$gen" "$dir" "$certs" "$wild" "$port" <<'PY' || die "$size: a sampled SNI got the wrong certificate"
import json, socket, ssl, subprocess, sys
gen, d, certs, wild, port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
out = subprocess.run([sys.executable, gen, "sample", "--dir", d, "--certs", certs, "--wildcards", wild, "-k", "20"],
                     check=True, capture_output=True, text=True).stdout
ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
for line in out.splitlines():
    sni = json.loads(line)["sni"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:  # verifies chain and name
            pass
# An unknown name gets the fallback (the first certificate), not its name.
ctx.check_hostname = False
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname="unknown.invalid") as t:
        cn = dict(x[0] for x in t.getpeercert()["subject"])["commonName"]
        assert cn == "site00000.sp.contoso.test", cn
PY
  # The start's hygiene runs on after "listening": let it end first.
  for i in $(seq 3000); do [ -n "$(inspected_ms "$logf" 1)" ] && break; sleep 0.01; done
  t_hup=$(now_ms)
  kill -HUP "$pid"
  for i in $(seq 3000); do
    sed 's/\x1b\[[0-9;]*m//g' "$logf" | grep -q 'reloaded' && break
    grep -q 'reload failed' "$logf" && die "$size: reload failed (see $logf)"
    sleep 0.01
  done
  sed 's/\x1b\[[0-9;]*m//g' "$logf" | grep -q 'reloaded' || die "$size: no reload within 30 s"
  local t_reload=$(($(now_ms) - t_hup))
  local rss_reload; rss_reload=$(rss_kib "$pid")
  # The reload's hygiene runs after "reloaded"; wait for its line.
  for i in $(seq 3000); do [ -n "$(inspected_ms "$logf" 2)" ] && break; sleep 0.01; done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$round" "$t_listen" "$(loaded_ms "$logf" 1)" \
    "$(inspected_ms "$logf" 1)" "$rss_start" "$t_reload" "$(loaded_ms "$logf" 2)" "$(inspected_ms "$logf" 2)" \
    "$rss_reload" >>"$TMP/rows.tsv"
  log "$size #$round: accepting after ${t_listen} ms (loaded in $(loaded_ms "$logf" 1) ms, inspected in $(inspected_ms "$logf" 1) ms), RSS $((rss_start / 1024)) MiB; reload ${t_reload} ms (loaded in $(loaded_ms "$logf" 2) ms, then inspected in $(inspected_ms "$logf" 2) ms), RSS $((rss_reload / 1024)) MiB"
  stop_session "$sid"
}

for round in $(seq "$ROUNDS"); do
  measure small "$round"
  measure large "$round"
done

python3 - "$TMP/rows.tsv" "$CERTS" "$WILDCARDS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
cols = ["start: exec to accepting connections (ms)", "start: load time logged (ms)",
        "start: certificate hygiene logged (ms)", "RSS after start (MiB)",
        "reload: SIGHUP to 'reloaded', new state serving (ms)", "reload: load time logged (ms)",
        "reload: certificate hygiene after it, off the serving thread (ms)", "RSS after reload (MiB)"]
def med(size, i):
    vals = [float(r[2 + i]) for r in rows if r[0] == size]
    v = statistics.median(vals)
    return f"{v / 1024:.1f}" if "MiB" in cols[i] else f"{v:.0f}"
print(f"\n| medians of {len(rows) // 2} rounds | 3 certificates, 3 routes | {sys.argv[2]} certificates, {sys.argv[2]} routes ({sys.argv[3]} wildcards) |")
print("|---|---:|---:|")
for i, c in enumerate(cols):
    print(f"| {c} | {med('small', i)} | {med('large', i)} |")
PY

if [ "${THROUGHPUT:-0}" = 1 ]; then
  run="$here/../shared/bench/run.sh"
  [ -x "$run" ] || die "no $run"
  python3 "$gen" certs --certs "$CERTS" --wildcards "$WILDCARDS" --bench-certs x --dir "$SCALE_DIR/certs"
  since=$(date -u '+%Y-%m-%d %H:%M')
  export RUNS=1 SKIP_DIRECT=1
  for pass in $(seq "$PASSES"); do
    log "throughput pass $pass/$PASSES: 3 certificates, 3 routes"
    SCALE_DIR="$TMP/scale-3" SCALE_CERTS=3 SCALE_WILDCARDS=0 \
      "$run" custom "$here/benches/bench-scale.sh" snigate-3 >"$TMP/run-3-$pass.txt" 2>&1 || { tail -20 "$TMP/run-3-$pass.txt" >&2; die "run.sh failed"; }
    log "throughput pass $pass/$PASSES: $CERTS certificates"
    SCALE_DIR="$SCALE_DIR" SCALE_CERTS=$CERTS SCALE_WILDCARDS=$WILDCARDS \
      "$run" custom "$here/benches/bench-scale.sh" snigate-10k >"$TMP/run-10k-$pass.txt" 2>&1 || { tail -20 "$TMP/run-10k-$pass.txt" >&2; die "run.sh failed"; }
  done
  results="${BENCH_OUT:-${TMPDIR:-/tmp}/snigate-bench}/results.md"
  log "rows since $since in $results:"
  python3 "$here/../shared/bench/summarize.py" --since "$since" "$results" || true
fi
