# shellcheck shell=bash
# Shell functions shared by the scripts in benches/, sourced (not run):
#
#   here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
#   . "$here/benches/lib.sh"
#
# It sets no shell options (the scripts keep their `set -euo pipefail`, and
# every function works under it), only defines functions and the globals
# T0, STREAM_MODULE, PIDS, PID_FILES, SESSIONS and LAST, and reads no
# environment variable but KEEP (cleanup, end_sessions). Of the script's
# own variables it reads only `dir` (see below).
#
# Two ways to stop what a script starts:
#   - fixed-port scripts (callgrind-*, syscalls-*, passthrough-vs-nginx):
#     background PIDs go into PIDS, daemonized nginx leave their pid file in
#     PID_FILES (start_nginx), and `trap cleanup EXIT` stops both and
#     removes the folder. These scripts keep their temporary folder in
#     `dir`, which cleanup, nginx_backend_http, nginx_https_proxy_http,
#     snigate_https_conf, a_test_get and callgrind_count read;
#   - scripts with long-lived helpers (idle-10k, scale-10k, soak): each
#     process runs in its own session (start_session), stopped by its saved
#     id (stop_session), all of them on exit (end_sessions, stop_sessions).

# ------------------------------------------------------------- messages
T0=$(date +%s)
log() { printf '[%4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# need TOOL...: exits (1) naming the first TOOL that is not on PATH.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
    done
}

# nginx's stream module (passthrough with `ssl_preread`), for `load_module`.
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
need_stream_module() {
    [ -f "$STREAM_MODULE" ] || { echo "needs libnginx-mod-stream (apt-get install libnginx-mod-stream)" >&2; exit 1; }
}

# free_port: a TCP port on 127.0.0.1 that is free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ------------------------------------------- temporary folder, fixed PIDs
# new_tmpdir NAME: prints a new folder /tmp/NAME.XXXXXX that nginx's
# unprivileged workers may traverse (mode 755). Use as dir="$(new_tmpdir x)":
# a failure fails the assignment, so `set -e` stops the script.
new_tmpdir() {
    local d
    d="$(mktemp -d "/tmp/$1.XXXXXX")" && chmod 755 "$d" && echo "$d"
}

PIDS=()      # processes started in the background, TERM on exit
PID_FILES=() # pid files of daemons (start_nginx), TERM on exit

# cleanup: the EXIT trap of the fixed-port scripts: TERM to every PID in
# PIDS and to the process of every pid file in PID_FILES, then $dir removed,
# unless KEEP is set (to anything): then "kept $dir" on stdout.
cleanup() {
    local p f
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
    for f in "${PID_FILES[@]+"${PID_FILES[@]}"}"; do
        if [ -f "$f" ]; then kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
    done
    [ -n "${dir:-}" ] || return 0
    if [ -n "${KEEP:-}" ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}

# ------------------------------------------------------------------ nginx
# nginx_conf BASE CONNECTIONS [DIRECTIVE...] < BODY: writes BASE.conf: one
# worker process, the DIRECTIVEs (one a line: "daemon off;", "load_module
# ...;"), pid file BASE.pid, error log BASE-error.log (level warn),
# CONNECTIONS per worker, then BODY (the http {} and stream {} blocks).
nginx_conf() {
    local base=$1 conns=$2
    shift 2
    {
        echo "worker_processes 1;"
        if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
        echo "pid $base.pid;"
        echo "error_log $base-error.log warn;"
        echo "events { worker_connections $conns; }"
        cat
    } >"$base.conf"
}

# nginx_http_basics DIR: the first lines of an http {} block: no access log
# and nginx's five temporary paths under DIR (the default ones are root's).
nginx_http_basics() {
    echo "  access_log off;"
    echo "  client_body_temp_path $1/body; proxy_temp_path $1/proxy;"
    echo "  fastcgi_temp_path $1/fcgi; uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;"
}

# nginx_upstream_pool BACKEND: inside http {}: upstream `backend` (BACKEND,
# 16 idle keep-alive connections kept), proxied to over HTTP/1.1 keep-alive.
nginx_upstream_pool() {
    echo "  upstream backend { server $1; keepalive 16; }"
    echo "  proxy_http_version 1.1;"
    echo '  proxy_set_header Connection "";'
}

# nginx_backend_http LISTEN ANSWER: the http {} block of a plain backend on
# LISTEN: `location / { ANSWER }` (e.g. 'return 200 "hi\n";'), keep-alive
# connections kept for good, temporary paths in $dir.
nginx_backend_http() {
    echo "http {"
    nginx_http_basics "$dir"
    echo "  keepalive_requests 100000000;"
    echo "  server { listen $1; location / { $2 } }"
    echo "}"
}

# nginx_https_proxy_http LISTEN BACKEND: the http {} block of nginx as the
# reverse proxy snigate_https_conf describes: TLS (and h2) on LISTEN with
# a.test's certificate in $dir/certs, to BACKEND over nginx_upstream_pool.
nginx_https_proxy_http() {
    echo "http {"
    nginx_http_basics "$dir"
    echo "  keepalive_requests 100000000;"
    nginx_upstream_pool "$2"
    cat <<EOF
  server {
    listen $1 ssl http2;
    ssl_certificate $dir/certs/a.test.crt; ssl_certificate_key $dir/certs/a.test.key;
    location / { proxy_pass http://backend; }
  }
}
EOF
}

# nginx_harness_pool BACKEND: inside http {}: client keep-alive kept for
# good and upstream `backend` (BACKEND) with a pool of 128 idle keep-alive
# connections, as the harness's nginx (with 16, 50 clients make nginx open
# and close backend connections all the time).
nginx_harness_pool() {
    cat <<EOF
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  upstream backend {
    server $1;
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
EOF
}

# nginx_harness_proxy LISTEN BACKEND CERTS: inside http {}: the TLS proxy of
# ../shared/bench/run.sh's nginx mode (its status server and verification
# log aside): keep-alive kept for good on both sides, a pool of 128 to
# BACKEND, and on LISTEN SNI a.test -> CERTS/rsa, b.test -> CERTS/ecdsa,
# anything else -> CERTS/fallback.
nginx_harness_proxy() {
    local listen=$1 backend=$2 certs=$3
    nginx_harness_pool "$backend"
    cat <<EOF
  ssl_protocols TLSv1.2 TLSv1.3;
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
EOF
}

# start_nginx BASE [CPUS]: starts nginx with BASE.conf (nginx_conf), prefix
# BASE's folder, on CPUS (taskset) when given. It daemonizes unless the
# configuration says `daemon off;`; its pid file goes into PID_FILES.
start_nginx() {
    local base=$1 pin=()
    if [ -n "${2:-}" ]; then pin=(taskset -c "$2"); fi
    PID_FILES+=("$base.pid")
    "${pin[@]}" nginx -c "$base.conf" -p "$(dirname "$base")" -e "$base-error.log"
}

# ------------------------------------------------------------- snigate
# snigate_https_conf LISTEN BACKEND [NAME]: a configuration for one worker
# thread, logging warnings: the https listener NAME (main) on LISTEN with
# a.test's certificate (`snigate gen-certs --dir "$dir/certs" --names
# a.test`), to the upstream `backend` (BACKEND).
snigate_https_conf() {
    cat <<EOF
[runtime]
workers = 1
[log]
level = "warn"
[[certificate]]
name = "a"
chain = "$dir/certs/a.test.crt"
key = "$dir/certs/a.test.key"
[[listener]]
name = "${3:-main}"
bind = ["$1"]
fallback_certificate = "a"
default_upstream = "backend"
[[upstream]]
name = "backend"
servers = ["$2"]
EOF
}

# snigate_lab_certificates DIR: the [[certificate]] tables "a", "b" and
# "fallback" for the files of `snigate gen-certs --dir DIR --names
# a.test,b.test`.
snigate_lab_certificates() {
    cat <<EOF
[[certificate]]
name = "a"
chain = "$1/a.test.crt"
key = "$1/a.test.key"

[[certificate]]
name = "b"
chain = "$1/b.test.crt"
key = "$1/b.test.key"

[[certificate]]
name = "fallback"
chain = "$1/fallback.crt"
key = "$1/fallback.key"
EOF
}

# a_test_get PORT N [CURL_OPTION...]: N requests to https://a.test:PORT/ on
# one connection (127.0.0.1; SNI a.test, chain checked against
# $dir/certs/ca.crt), the answers discarded.
a_test_get() {
    local port=$1 n=$2 urls=() i
    shift 2
    for ((i = 0; i < n; i++)); do urls+=("https://a.test:$port/"); done
    curl -s "$@" --cacert "$dir/certs/ca.crt" --resolve "a.test:$port:127.0.0.1" "${urls[@]}" >/dev/null
}

# retry TRIES PAUSE CMD...: runs CMD (its stderr dropped) until it succeeds,
# at most TRIES times, PAUSE seconds apart; fails when it never did.
retry() {
    local tries=$1 pause=$2 i
    shift 2
    for ((i = 1; i <= tries; i++)); do
        "$@" 2>/dev/null && return 0
        [ "$i" = "$tries" ] || sleep "$pause"
    done
    return 1
}

# callgrind_count PID PREFIX CMD...: the instructions the process PID (under
# `valgrind --tool=callgrind --callgrind-out-file=$dir/PREFIX.%p`) spends
# while CMD runs: counters zeroed before, dumped after, total of the dump.
callgrind_count() {
    local pid=$1 prefix=$2 dump
    shift 2
    callgrind_control -z "$pid" >/dev/null
    "$@"
    callgrind_control -d "$pid" >/dev/null
    # shellcheck disable=SC2012 # the newest dump: ls -t
    dump="$(ls -t "$dir/$prefix".* | head -1)"
    awk '/^summary:|^totals:/ { print $2; exit }' "$dump"
}

# cpu_per NAME PID N UNIT OUT CMD...: runs CMD (output to OUT), fails
# unless OUT says N of N succeeded (h2load), then prints PID's CPU time per
# UNIT (µs; utime + stime from /proc, which is the scheduler's exact run
# time, split between user and kernel by sampling at the tick) and its
# voluntary context switches (waits for its sockets, all threads) per UNIT.
cpu_per() {
    local name=$1 pid=$2 n=$3 unit=$4 out=$5 u0 s0 u1 s1 w0 w1
    shift 5
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    w0="$(cpu_per_waits "$pid")"
    "$@" >"$out" 2>&1
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    w1="$(cpu_per_waits "$pid")"
    grep -q " $n succeeded, 0 failed" "$out" ||
        { echo "$name: not every request succeeded:" >&2; grep "requests:" "$out" >&2; exit 1; }
    awk -v n="$n" -v t="$(getconf CLK_TCK)" -v name="$name" -v unit="$unit" \
        -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) 'BEGIN {
        k = 1e6 / t / n
        printf "%-8s user %6.2f  kernel %6.2f  total %6.2f  µs per %s, %.2f waits\n", name, u * k, s * k, (u + s) * k, unit, w / n }'
}
cpu_per_waits() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {printf "%.0f", s}'; }

# syscalls_per PID OUT N TITLE CMD...: `strace -f -c` attached to PID (into
# OUT) while CMD runs, then TITLE and PID's system calls divided by N, by
# call, and their total; then the TCP segments the whole machine sent
# while CMD ran (`nstat TcpOutSegs`: client, proxy and backend on
# loopback), divided by N: a proxy that splits a response or sends an ACK
# of its own makes the kernel work more per request without a system call
# more.
syscalls_per() {
    local pid=$1 out=$2 n=$3 title=$4 tracer segs
    shift 4
    strace -f -c -o "$out" -p "$pid" 2>/dev/null &
    tracer=$!
    sleep 1
    nstat -n
    "$@"
    segs="$(nstat -z TcpOutSegs | awk '$1 == "TcpOutSegs" { print $2 }')"
    sleep 0.5
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    echo "$title"
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
            printf "  %-14s %6.2f\n", $NF, $4 / n; sum += $4 }
         END { printf "  %-14s %6.2f\n", "total", sum / n }' "$out"
    awk -v n="$n" -v s="${segs:-0}" 'BEGIN { printf "  %-14s %6.2f  (TCP segments sent on the machine)\n", "segments", s / n }'
}

# ------------------------------------------------------------- sessions
SESSIONS=() # session ids (== PIDs) of what start_session started

# sess_members SID: the live (not zombie) processes of session SID.
sess_members() { ps -e -o pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ {print $1}'; }

# start_session LOGFILE CMD...: CMD in a new session, output appended to
# LOGFILE, stdin from /dev/null; sets LAST (its session id == its PID).
LAST=
start_session() {
    local logfile=$1
    shift
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    LAST=$!
    SESSIONS+=("$LAST")
}

# forget SID: SID is no longer stopped on exit.
forget() {
    local keep=() s
    for s in "${SESSIONS[@]+"${SESSIONS[@]}"}"; do [ "$s" = "$1" ] || keep+=("$s"); done
    SESSIONS=("${keep[@]+"${keep[@]}"}")
}

# stop_session SID [SIGNAL]: SIGNAL (TERM) to every member of session SID,
# KILL to those left after 5 s; then forgotten.
stop_session() {
    local sid=$1 sig=${2:-TERM} p i
    [ -n "$sid" ] || return 0
    for p in $(sess_members "$sid"); do kill "-$sig" "$p" 2>/dev/null || true; done
    for i in $(seq 50); do [ -z "$(sess_members "$sid")" ] && break; sleep 0.1; done
    for p in $(sess_members "$sid"); do kill -KILL "$p" 2>/dev/null || true; done
    wait "$sid" 2>/dev/null || true
    forget "$sid"
}

# stop_sessions: the start of an EXIT trap: errexit and the EXIT, INT and
# TERM traps off, every session still in SESSIONS stopped.
stop_sessions() {
    set +e
    trap - EXIT INT TERM
    local s
    for s in "${SESSIONS[@]+"${SESSIONS[@]}"}"; do stop_session "$s"; done
}

# end_sessions DIR: an EXIT trap: stop_sessions, then DIR removed unless
# KEEP=1 (then logged), and exit with the script's status.
end_sessions() {
    local rc=$?
    stop_sessions
    if [ "${KEEP:-0}" = 1 ]; then log "kept $1"; else rm -rf "$1"; fi
    exit "$rc"
}

# wait_healthy SID LOGFILE ADMIN_PORT [PORT]: waits up to 10 s until the
# snigate of session SID answers on its admin /healthz (and something
# listens on PORT: its backend); dies (showing LOGFILE) when it exits.
wait_healthy() {
    local sid=$1 logfile=$2 admin=$3 port=${4:-} what=snigate i
    [ -n "$port" ] && what="snigate or backend"
    for i in $(seq 100); do
        curl -fs --max-time 1 "http://127.0.0.1:$admin/healthz" >/dev/null 2>&1 \
            && { [ -z "$port" ] || [ -n "$(ss -Hltn "sport = :$port")" ]; } && return 0
        [ -n "$(sess_members "$sid")" ] || { cat "$logfile" >&2; die "snigate exited"; }
        [ "$i" = 100 ] && die "$what did not come up within 10 s"
        sleep 0.1
    done
}

# check_get HOST PORT CA: GET https://HOST:PORT/check (127.0.0.1, chain
# checked against CA); prints the body, dies unless the status is 200.
check_get() {
    local out
    out=$(curl -s --max-time 10 --cacert "$3" --resolve "$1:$2:127.0.0.1" -w ' %{http_code}' \
        "https://$1:$2/check") || die "check request to $1 failed"
    [ "${out##* }" = 200 ] || die "check request to $1: got '$out'"
    echo "${out% *}"
}
