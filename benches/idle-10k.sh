#!/usr/bin/env bash
# 10,000 concurrent idle TLS connections, then one request on each.
#
# What: starts a backend (nginx, 1 worker, when installed; else the asyncio
# backend of benches/loadtools.py) and snigate (1 worker thread,
# client_idle 600s, max_connections N + 1000, max_connections_per_ip 0 when
# the binary knows that key) on free 127.0.0.1 ports, with lab
# certificates from `snigate gen-certs` in a temporary folder.  Then
# benches/loadtools.py idle opens N TLS connections (SNI a.test, chain and
# host name verified, 64 handshakes in flight) and keeps them idle; once they
# are all open, it sends one keep-alive `GET` on every one of them (100 in
# flight) and checks each answer is a 200 from the backend.  Nothing is closed
# until the end.
#
# Run:   benches/idle-10k.sh                 (about 1 minute)
#   env: N=10000  HS_CONCURRENCY=64  REQ_CONCURRENCY=100
#        ROUNDS=1 (2: a second client does it all again on the same snigate,
#                  to see whether the memory kept after the first is reused)
#        BACKEND=auto|nginx|python  SNIGATE_BIN=target/release/snigate
#        KEEP=1 keeps the temporary folder (configuration, logs, client JSON)
#        CLIENT_PARK=1ms: [timeouts] client_park (default: snigate's 100ms;
#              with 1ms every connection is parked right after its answer,
#              which shows what an idle connection costs once parked; with
#              the default, those answered in the last 100 ms of the burst
#              still hold hyper's buffers when RSS is read)
#        H2=1: the connections negotiate h2 (ALPN) and send their preface at
#              once; the request is an h2 GET on stream 1
#
# Prints: snigate's RSS (VmRSS of /proc/PID/status), open fds and threads
#   before, after the N handshakes, after the N requests and after the clients
#   closed, with the growth per connection in KiB; the client's handshake and
#   request results; the server-side ESTABLISHED count (ss); backend
#   connections; snigate_requests_total and the access log's status counts.
#   Exit 0 only when every connection was established, stayed open, and got
#   its 200.
#
# Needs: a release build, python3, curl, ss; `ulimit -n` >= N + 1000 (the
# script raises the soft limit to the hard one).  Every process it starts runs
# in its own session and is stopped, by its saved id, on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/benches/lib.sh" # log, die, sessions, nginx_conf, ...
bin_src="${SNIGATE_BIN:-$here/target/release/snigate}"
tools="$here/benches/loadtools.py"
N=${N:-10000}
HS_CONCURRENCY=${HS_CONCURRENCY:-64}
REQ_CONCURRENCY=${REQ_CONCURRENCY:-100}
BACKEND=${BACKEND:-auto}
ROUNDS=${ROUNDS:-1}
H2_FLAG=""; [ "${H2:-0}" = 1 ] && H2_FLAG="--h2"

[ -x "$bin_src" ] || die "no snigate binary at $bin_src (cargo build --release --bin snigate)"
command -v python3 >/dev/null || die "python3 missing"
command -v curl >/dev/null || die "curl missing"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n); [ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -ge $((N + 1000)) ] || die "ulimit -n is $nofile: need at least $((N + 1000)) (N=$N)"
if [ "$BACKEND" = auto ]; then
  if command -v nginx >/dev/null; then BACKEND=nginx; else BACKEND=python; fi
fi

TMP="$(new_tmpdir snigate-idle10k)"
trap 'end_sessions "$TMP"' EXIT
trap 'log interrupted; exit 130' INT TERM

PROXY_PORT=$(free_port); BACKEND_PORT=$(free_port); ADMIN_PORT=$(free_port)
# a copy, so that a rebuild during the run cannot swap the binary under us
cp -p "$bin_src" "$TMP/snigate"; bin="$TMP/snigate"
BIN_MTIME=$(stat -c %y "$bin" | cut -d. -f1)
"$bin" gen-certs --dir "$TMP/certs" --names a.test,b.test >"$TMP/gen-certs.log"

# ------------------------------------------------------------------ backend
if [ "$BACKEND" = nginx ]; then
  mkdir -p "$TMP/nginx-tmp"
  nginx_conf "$TMP/backend" 16000 "worker_rlimit_nofile 20000;" "daemon off;" <<EOF
http {
$(nginx_http_basics "$TMP/nginx-tmp")
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {
    listen 127.0.0.1:$BACKEND_PORT backlog=4096;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
}
EOF
  start_session "$TMP/backend.log" nginx -c "$TMP/backend.conf"
else
  start_session "$TMP/backend.log" python3 "$tools" backend --port "$BACKEND_PORT" --name python
fi

# ------------------------------------------------------------------ snigate
C="$TMP/certs"
# every connection comes from 127.0.0.1: the per-address limit (a newer key,
# default 1000) is turned off; a binary that does not know the key gets the
# configuration without it
PER_IP="max_connections_per_ip = 0"
write_conf() {
cat >"$TMP/snigate.toml" <<EOF
[runtime]
workers = 1

[admin]
bind = "127.0.0.1:$ADMIN_PORT"

[log]
level = "warn"
access_log = "$TMP/access.jsonl"

[timeouts]
client_idle = "600s"
${CLIENT_PARK:+client_park = \"$CLIENT_PARK\"}

$(snigate_lab_certificates "$C")

[[listener]]
name = "idle"
bind = ["127.0.0.1:$PROXY_PORT"]
fallback_certificate = "fallback"
default_upstream = "backend"
max_connections = $((N + 1000))
$PER_IP

[[upstream]]
name = "backend"
servers = ["127.0.0.1:$BACKEND_PORT"]
EOF
}
write_conf
if ! "$bin" check -c "$TMP/snigate.toml" >"$TMP/check.log" 2>&1 && grep -q max_connections_per_ip "$TMP/check.log"; then
  PER_IP=""; write_conf
fi
"$bin" check -c "$TMP/snigate.toml" >"$TMP/check.log" 2>&1 || { cat "$TMP/check.log" >&2; die "snigate check failed"; }
start_session "$TMP/snigate.log" "$bin" run -c "$TMP/snigate.toml"
SNIGATE_PID=$LAST

wait_healthy "$SNIGATE_PID" "$TMP/snigate.log" "$ADMIN_PORT" "$BACKEND_PORT"
out=$(check_get a.test "$PROXY_PORT" "$C/ca.crt")
log "backend $BACKEND on :$BACKEND_PORT, snigate pid $SNIGATE_PID on :$PROXY_PORT (admin :$ADMIN_PORT); check request: $out"

snap() {  # -> "rss_kib fds threads"
  local rss thr fds
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$SNIGATE_PID/status")
  thr=$(awk '/^Threads/{print $2}' "/proc/$SNIGATE_PID/status")
  fds=$(ls "/proc/$SNIGATE_PID/fd" | wc -l)
  echo "$rss $fds $thr"
}
est_in() { ss -Htn state established "( sport = :$PROXY_PORT )" | wc -l; }
est_be() { ss -Htn state established "( dport = :$BACKEND_PORT )" | wc -l; }
wait_file() {  # file timeout_s client_sid
  local f=$1 t=$2 sid=$3 i
  for i in $(seq $((t * 10))); do
    [ -f "$f" ] && return 0
    [ -n "$(sess_members "$sid")" ] || { cat "$CLIENT_LOG" >&2; die "client exited early"; }
    sleep 0.1
  done
  die "timed out after ${t}s waiting for $f"
}
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }

sleep 1
read -r RSS0 FD0 THR0 < <(snap)
log "before: RSS $RSS0 KiB, $FD0 fds, $THR0 threads"
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
per() { awk -v a="$1" -v b="$RSS0" -v n="$N" 'BEGIN{printf "%.1f", (a-b)/n}'; }
ROWS=() LINES=() FAILED=0
row() { ROWS+=("$(printf '%-36s %9s %9s %8s %8s %16s' "$@")"); }
row "snigate (1 worker)" "RSS MiB" "KiB/conn" "fds" "threads" "ESTABLISHED"
row "before" "$(mib "$RSS0")" "-" "$FD0" "$THR0" "-"
for r in $(seq "$ROUNDS"); do
  CTL="$TMP/ctl$r"; mkdir -p "$CTL"
  start_session "$TMP/client$r.log" python3 "$tools" idle --port "$PROXY_PORT" --ca "$C/ca.crt" --sni a.test -n "$N" \
    --concurrency "$HS_CONCURRENCY" --req-concurrency "$REQ_CONCURRENCY" --ctl "$CTL" $H2_FLAG
  CLIENT_SID=$LAST CLIENT_LOG="$TMP/client$r.log"
  wait_file "$CTL/phase1.json" 600 "$CLIENT_SID"
  read -r RSS1 FD1 THR1 < <(snap); EST1=$(est_in); BE1=$(est_be)
  log "round $r, after handshakes: $(json "$CTL/phase1.json" 'f"{established}/{requested} established in {handshake_seconds}s, {closed_by_peer} closed by peer, errors {errors}"'); RSS $RSS1 KiB, $FD1 fds"
  touch "$CTL/go"
  wait_file "$CTL/phase2.json" 600 "$CLIENT_SID"
  read -r RSS2 FD2 THR2 < <(snap); EST2=$(est_in); BE2=$(est_be)
  log "round $r, after requests: $(json "$CTL/phase2.json" 'f"{requests_200}/{requests_sent} got 200 in {request_seconds}s, {closed_by_peer} closed by peer, errors {errors}"'); RSS $RSS2 KiB, $FD2 fds"
  METRICS=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)
  touch "$CTL/close"
  for i in $(seq 300); do [ -z "$(sess_members "$CLIENT_SID")" ] && break; sleep 0.1; done
  [ -f "$CTL/phase3.json" ] || die "client did not report before closing"
  for i in $(seq 100); do [ "$(est_in)" -le 0 ] && break; sleep 0.1; done
  sleep 2
  read -r RSS3 FD3 THR3 < <(snap)
  sfx=""; [ "$ROUNDS" -gt 1 ] && sfx=" (round $r)"
  row "after $N handshakes$sfx" "$(mib "$RSS1")" "$(per "$RSS1")" "$FD1" "$THR1" "$EST1 (be $BE1)"
  row "after 1 request on each$sfx" "$(mib "$RSS2")" "$(per "$RSS2")" "$FD2" "$THR2" "$EST2 (be $BE2)"
  row "after the clients closed$sfx" "$(mib "$RSS3")" "$(per "$RSS3")" "$FD3" "$THR3" "$(est_in)"
  ESTD=$(json "$CTL/phase1.json" 'established')
  OK200=$(json "$CTL/phase2.json" 'requests_200')
  CL1=$(json "$CTL/phase1.json" 'closed_by_peer'); CL2=$(json "$CTL/phase2.json" 'closed_by_peer')
  OPEN3=$(json "$CTL/phase3.json" 'open_before_close')
  if [ "$r" = 1 ]; then
    LINES+=("client: $(json "$CTL/phase1.json" 'f"TLS {tls_versions}, {ciphers}, SNI {sni}"')")
    FDPC=$(awk -v a="$FD1" -v b="$FD0" -v n="$N" 'BEGIN{printf "%.3f", (a-b)/n}') BEPOOL=$BE2
  fi
  LINES+=("round $r handshakes: $ESTD/$N established in $(json "$CTL/phase1.json" 'f"{handshake_seconds}s ({handshakes_per_s}/s"'), $HS_CONCURRENCY in flight), $CL1 closed by snigate while idle; errors: $(json "$CTL/phase1.json" 'errors')")
  LINES+=("round $r requests:   $OK200/$ESTD answered 200 in $(json "$CTL/phase2.json" 'request_seconds')s ($REQ_CONCURRENCY in flight); statuses $(json "$CTL/phase2.json" 'statuses'); $CL2 closed by snigate; $OPEN3/$N still open at the end; errors: $(json "$CTL/phase2.json" 'errors')")
  [ "$ESTD" = "$N" ] && [ "$OK200" = "$N" ] && [ "$CL1" = 0 ] && [ "$CL2" = 0 ] && [ "$OPEN3" = "$N" ] || FAILED=1
done

# ------------------------------------------------------------------- report
AL_STATUS=$(python3 -c '
import json, sys, collections
c = collections.Counter()
for line in open(sys.argv[1]):
    try: c[json.loads(line).get("status")] += 1
    except ValueError: pass
print(", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=str)))' "$TMP/access.jsonl" 2>/dev/null || echo "?")
VERSION=$("$bin" --version 2>/dev/null || echo snigate)
echo
echo "== idle-10k: $(date -u '+%Y-%m-%d %H:%M UTC'), $VERSION (binary of $BIN_MTIME), $(nproc) CPUs, backend $BACKEND, N=$N, rounds $ROUNDS${H2_FLAG:+, h2}${PER_IP:+, $PER_IP} =="
printf '%s\n' "${ROWS[@]}"
echo "(KiB/conn = (RSS - RSS before) / $N; fds include the listening, admin and log sockets and the proxy->backend pool)"
echo
printf '%s\n' "${LINES[@]}"
echo "fds per client connection: $FDPC while idle (round 1); proxy->backend connections after the requests: $BEPOOL"
echo "metrics: $(printf '%s\n' "$METRICS" | grep '^snigate_requests_total' | grep -v ' 0$' | tr '\n' ' ')"
echo "access log: ${AL_STATUS} (1 of them the check request)"
if [ "$FAILED" != 0 ]; then
  echo "RESULT: FAILED (not every connection was established, kept and answered 200)"; exit 1
fi
echo "RESULT: OK: all $N connections established, held idle, and answered 200 ($ROUNDS round(s))"
