#!/usr/bin/env bash
# Soak benchmark: one snigate process under a moderate mixed load, with
# reloads and backend crashes, for MINUTES minutes (default 30), sampling its
# memory and file descriptors.  The point: flat after warm-up, no leak, no
# error beyond the faults injected.
#
# Run:   benches/soak.sh [MINUTES]           e.g. benches/soak.sh 3 (smoke run)
#
# What runs (all on 127.0.0.1, free ports picked at start; lab certificates
# from `snigate gen-certs`; generators and backends from benches/loadtools.py,
# Python standard library only):
#   snigate   1 worker thread; client_send 10s (so a client that stops reading
#             is cut), client_idle 60s, client_hello 5s, upstream_read 30s;
#             access log on; one upstream of two backends with health checks.
#   backends  two asyncio HTTP/1.1 keep-alive backends (b1, b2).
#   keepalive KA_CONNS (8) keep-alive connections, KA_RATE (150) GET/s in all.
#   newconn   NEWCONN_RATE (15)/s new TLS connections, one GET each, Connection: close.
#   nosni     NOSNI_RATE (4)/s connections without SNI (none, or an IP address,
#             which is never sent as SNI): must get the fallback certificate;
#             3 GETs each, routed by Host.
#   badhello  BAD_RATE (2)/s failing hellos in turn: random bytes, plain HTTP,
#             a TLS 1.0-only hello, a truncated hello, a client rejecting the
#             certificate; plus every 30 s a silent client that must be closed
#             by client_hello.
#   upload    a 4 MiB PUT (Content-Length) or POST (chunked) every 2 s on a
#             keep-alive connection; the backend checks length and CRC32.
#   slowread  2 clients downloading 16 MiB at SLOW_KIBS (256) KiB/s with a 2 s
#             pause (below client_send): must never be cut; every byte checked.
#             Mind the socket buffer: Linux wakes a blocked writer only when
#             about 1 MB of its send buffer (autotuned up to tcp_wmem's max,
#             4 MiB) has drained, so a client reading steadily slower than
#             about 1 MB per client_send is cut although it never stops
#             (e.g. 256 KiB/s with client_send 5s).
#   stopread  every 30 s a 32 MiB download that stops reading after 1 MiB for
#             client_send + 10 s: snigate must cut it (client_send).
#   idlers    20 connections idle 2-55 s (must stay open) or 65-80 s (must be
#             closed by client_idle).
#   faults    `snigate reload` every RELOAD_EVERY (60) s; backend b1 or b2
#             (in turn) killed with SIGKILL at KILL_FIRST (75) s and then every
#             KILL_EVERY (180) s, restarted KILL_DOWN (20) s later.
#
# Prints at the end (also written to OUT/summary.txt):
#   RSS after the warm-up (WARMUP, 120 s): min / median / max and the slope of
#   a linear fit (KiB per minute); open fds min / max; per generator the
#   successful operations, the faults that behaved as required, and the errors
#   split into "near a backend kill" (the request was in flight when a backend
#   was killed, and that backend served it when its X-Backend header is known;
#   or it started at most 5 s after a kill) and "other"; the access log by
#   status and error; the non-zero snigate_* counters of /metrics
#   (requests by class, handshakes by outcome, reloads...); WARN/ERROR lines
#   of snigate's log; snigate's exit code after SIGTERM.  A last VERDICT line
#   counts the unexpected errors; the exit status is 0 when there are none.
#   Samples every SAMPLE (10) s go to OUT/samples.csv
#   (elapsed_s,rss_kib,fds,threads,active_conns,backend_conns,cpu_s).
#
# Env: OUT (default /tmp/snigate-soak/<UTC stamp>, kept), SNIGATE_BIN,
# CLIENT_SEND (10), the rates above, WARMUP, SAMPLE, RELOAD_EVERY, KILL_*.
# Needs: a release build, python3, curl, ss, setsid.  Every process started
# here runs in its own session and is stopped by its saved id on exit, Ctrl-C,
# or by the watchdog (MINUTES + 10 min).  CPU use is moderate: about 3 % of a
# core for snigate, the rest in the Python generators and backends.
set -euo pipefail
MINUTES=${1:-30}
case "$MINUTES" in '' | *[!0-9]*) echo "usage: $0 [MINUTES]" >&2; exit 2 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh" # die, sessions, free_port, snigate_lab_certificates, ...
bin_src="${SNIGATE_BIN:-$here/target/release/snigate}"
tools="$here/benches/loadtools.py"
WARMUP=${WARMUP:-120} SAMPLE=${SAMPLE:-10}
RELOAD_EVERY=${RELOAD_EVERY:-60}
KILL_FIRST=${KILL_FIRST:-75} KILL_EVERY=${KILL_EVERY:-180} KILL_DOWN=${KILL_DOWN:-20}
KA_CONNS=${KA_CONNS:-8} KA_RATE=${KA_RATE:-150} NEWCONN_RATE=${NEWCONN_RATE:-15}
NOSNI_RATE=${NOSNI_RATE:-4} BAD_RATE=${BAD_RATE:-2}
SLOW_KIBS=${SLOW_KIBS:-256}
CLIENT_SEND=${CLIENT_SEND:-10} CLIENT_IDLE=60 CLIENT_HELLO=5
DURATION=$((MINUTES * 60))
log() { printf '[%5ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; } # lib.sh's, one digit wider

[ -x "$bin_src" ] || die "no snigate binary at $bin_src (cargo build --release --bin snigate)"
for t in python3 curl ss setsid; do command -v "$t" >/dev/null || die "$t missing"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

OUT=${OUT:-/tmp/snigate-soak/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
: >"$OUT/events.log"

cleanup() {
  local rc=$?
  stop_sessions
  log "stopped everything (exit $rc); files in $OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted / watchdog"; exit 130' INT TERM
start_session "$OUT/watchdog.log" bash -c "sleep $((DURATION + 600)); kill -TERM $$"

PROXY_PORT=$(free_port) ADMIN_PORT=$(free_port) B1_PORT=$(free_port) B2_PORT=$(free_port)
declare -A BPORT=([b1]=$B1_PORT [b2]=$B2_PORT) BSID=()
export SOAK_B1_PORT=$B1_PORT SOAK_B2_PORT=$B2_PORT   # for the summary (access log's server)
# a copy, so that a rebuild during the run cannot swap the binary under us
cp -p "$bin_src" "$OUT/snigate"; bin="$OUT/snigate"
C="$OUT/certs"
"$bin" gen-certs --dir "$C" --names a.test,b.test >"$OUT/gen-certs.log"
event() { echo "$(date +%s.%N) $*" >>"$OUT/events.log"; }

start_backend() {
  start_session "$OUT/backend-$1.log" python3 "$tools" backend --port "${BPORT[$1]}" --name "$1"
  BSID[$1]=$LAST
  disown "$LAST"   # it gets SIGKILLed on purpose: no job-status message from bash
  local i
  for i in $(seq 50); do [ -n "$(ss -Hltn "sport = :${BPORT[$1]}")" ] && return 0; sleep 0.1; done
  die "backend $1 did not listen within 5 s"
}
start_backend b1
start_backend b2

CONF="$OUT/snigate.toml"
cat >"$CONF" <<EOF
# written by benches/soak.sh
[runtime]
workers = 1
pid_file = "$OUT/run/snigate.pid"

[admin]
bind = "127.0.0.1:$ADMIN_PORT"

[log]
level = "warn"
access_log = "$OUT/access.jsonl"

[timeouts]
client_hello = "${CLIENT_HELLO}s"
client_idle = "${CLIENT_IDLE}s"
client_send = "${CLIENT_SEND}s"
upstream_read = "30s"
upstream_connect = "2s"
shutdown_grace = "5s"

$(snigate_lab_certificates "$C")

[[listener]]
name = "soak"
bind = ["127.0.0.1:$PROXY_PORT"]
fallback_certificate = "fallback"
default_upstream = "pool"

[[route]]
hosts = ["a.test", "b.test"]
upstream = "pool"

[[upstream]]
name = "pool"
servers = ["127.0.0.1:$B1_PORT", "127.0.0.1:$B2_PORT"]
health = { path = "/healthz", interval = "2s", timeout = "1s" }
EOF
"$bin" check -c "$CONF" >"$OUT/check.log" 2>&1 || { cat "$OUT/check.log" >&2; die "snigate check failed"; }
start_session "$OUT/snigate.log" "$bin" run -c "$CONF"
SNIGATE_PID=$LAST
wait_healthy "$SNIGATE_PID" "$OUT/snigate.log" "$ADMIN_PORT"
for h in a.test b.test; do
  check_get "$h" "$PROXY_PORT" "$C/ca.crt" >/dev/null
done
log "snigate $("$bin" --version | awk '{print $2}') (binary of $(stat -c %y "$bin" | cut -d. -f1)) pid $SNIGATE_PID on :$PROXY_PORT, admin :$ADMIN_PORT, backends b1 :$B1_PORT b2 :$B2_PORT; $MINUTES min; files in $OUT"

# ---------------------------------------------------------------- generators
ROLES=(keepalive newconn nosni badhello upload slowread stopread idlers)
declare -A GSID=()
gen() {  # gen ROLE ARGS...
  local role=$1; shift
  start_session "$OUT/gen-$role.log" python3 "$tools" "$role" --port "$PROXY_PORT" --ca "$C/ca.crt" --out "$OUT/gen-$role.json" "$@"
  GSID[$role]=$LAST
}
gen keepalive --conns "$KA_CONNS" --rate "$KA_RATE"
gen newconn --rate "$NEWCONN_RATE"
gen nosni --rate "$NOSNI_RATE" --expect-cert "$C/fallback.crt"
gen badhello --rate "$BAD_RATE" --silent-limit $((CLIENT_HELLO + 10))
gen upload --size $((4 << 20)) --interval 2
gen slowread --threads 2 --size $((16 << 20)) --kib-per-s "$SLOW_KIBS" --pause 2
gen stopread --size $((32 << 20)) --stall $((CLIENT_SEND + 10)) --every 30
gen idlers --threads 20 --client-idle "$CLIENT_IDLE"
event start

# ------------------------------------------------------------ the main loop
CLK_TCK=$(getconf CLK_TCK)
echo "elapsed_s,rss_kib,fds,threads,active_conns,backend_conns,cpu_s" >"$OUT/samples.csv"
sample() {
  local el=$1 st rss thr fds act be cpu
  st="/proc/$SNIGATE_PID"
  rss=$(awk '/^VmRSS/{print $2}' "$st/status" 2>/dev/null) || return 0
  thr=$(awk '/^Threads/{print $2}' "$st/status")
  fds=$(ls "$st/fd" 2>/dev/null | wc -l)
  cpu=$(awk -v hz="$CLK_TCK" '{sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "$st/stat")
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/metrics-last.txt" 2>/dev/null || true
  act=$(awk '/^snigate_active_connections\{/{s += $2} END{print s + 0}' "$OUT/metrics-last.txt")
  be=$(ss -Htn state established "( dport = :$B1_PORT or dport = :$B2_PORT )" | wc -l)
  echo "$el,$rss,$fds,$thr,$act,$be,$cpu" >>"$OUT/samples.csv"
  if [ $((el % 60)) -lt "$SAMPLE" ]; then
    log "t=${el}s RSS $((rss / 1024)) MiB, $fds fds, $act client conns, $be backend conns, cpu ${cpu}s"
  fi
}
next_sample=0 next_reload=$RELOAD_EVERY next_kill=$KILL_FIRST restart_at=-1 down="" victim=b1 nreload=0
START=$(date +%s)
while :; do
  el=$(($(date +%s) - START))
  [ "$el" -ge "$DURATION" ] && break
  [ -n "$(sess_members "$SNIGATE_PID")" ] || { event "snigate-died"; log "snigate DIED"; break; }
  for r in "${ROLES[@]}"; do
    if [ "${GSID[$r]}" != 0 ] && [ -z "$(sess_members "${GSID[$r]}")" ]; then
      log "generator $r exited early (see $OUT/gen-$r.log)"; event "gen-died $r"; GSID[$r]=0
    fi
  done
  if [ "$el" -ge "$next_sample" ]; then sample "$el"; next_sample=$((next_sample + SAMPLE)); fi
  if [ "$el" -ge "$next_reload" ]; then
    rc=0; timeout 20 "$bin" reload -c "$CONF" >>"$OUT/reload.log" 2>&1 || rc=$?
    nreload=$((nreload + 1)); event "reload rc=$rc"
    [ "$rc" = 0 ] || log "reload $nreload: exit $rc"
    next_reload=$((next_reload + RELOAD_EVERY))
  fi
  if [ "$el" -ge "$next_kill" ] && [ -z "$down" ]; then
    down=$victim
    for p in $(sess_members "${BSID[$down]}"); do kill -KILL "$p" 2>/dev/null || true; done
    event "kill $down"
    log "killed backend $down (SIGKILL); restart in ${KILL_DOWN}s"
    stop_session "${BSID[$down]}"
    restart_at=$((el + KILL_DOWN)) next_kill=$((next_kill + KILL_EVERY))
    [ "$victim" = b1 ] && victim=b2 || victim=b1
  fi
  if [ -n "$down" ] && [ "$el" -ge "$restart_at" ]; then
    start_backend "$down"; event "start $down"; log "restarted backend $down"; down=""
  fi
  sleep 1
done

# ------------------------------------------------------------------ wind-up
event end
log "stopping the load generators"
for r in "${ROLES[@]}"; do
  if [ "${GSID[$r]}" != 0 ]; then
    for p in $(sess_members "${GSID[$r]}"); do kill -TERM "$p" 2>/dev/null || true; done
  fi
done
for i in $(seq 200); do   # they write their JSON reports and exit within a few seconds
  alive=0
  for r in "${ROLES[@]}"; do
    if [ "${GSID[$r]}" != 0 ] && [ -n "$(sess_members "${GSID[$r]}")" ]; then alive=1; fi
  done
  [ "$alive" = 0 ] && break
  sleep 0.1
done
for r in "${ROLES[@]}"; do
  if [ "${GSID[$r]}" != 0 ]; then stop_session "${GSID[$r]}"; fi
done
if [ -n "$down" ]; then start_backend "$down"; event "start $down"; fi
sleep 1
curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/metrics-end.txt" || true
sample "$(($(date +%s) - START))"
if [ -n "$(sess_members "$SNIGATE_PID")" ]; then
  kill -TERM "$SNIGATE_PID"
  rc=0
  for i in $(seq 150); do [ -z "$(sess_members "$SNIGATE_PID")" ] && break; sleep 0.1; done
  if [ -n "$(sess_members "$SNIGATE_PID")" ]; then echo "still running 15 s after SIGTERM" >"$OUT/snigate.exit"; else
    wait "$SNIGATE_PID" || rc=$?; echo "$rc" >"$OUT/snigate.exit"; fi
  forget "$SNIGATE_PID"
else
  echo "died during the run" >"$OUT/snigate.exit"
fi
for b in b1 b2; do stop_session "${BSID[$b]}"; done

rc=0
echo "snigate soak: $MINUTES min, $(date -u '+%Y-%m-%d %H:%M UTC'), snigate $("$bin" --version | awk '{print $2}') (binary of $(stat -c %y "$bin" | cut -d. -f1)), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/summary.txt"
python3 "$tools" summary --dir "$OUT" --warmup "$WARMUP" --interval "$SAMPLE" \
  --roles "$(IFS=,; echo "${ROLES[*]}")" >>"$OUT/summary.txt" 2>&1 || rc=$?
echo
cat "$OUT/summary.txt"
[ -f "$OUT/access.jsonl" ] && gzip -f "$OUT/access.jsonl"
rm -f "$OUT/snigate"   # the copy of the binary
log "files: $OUT (samples.csv, summary.txt, access.jsonl.gz, *.log)"
exit "$rc"
