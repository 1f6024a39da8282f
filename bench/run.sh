#!/usr/bin/env bash
# bench/run.sh: the issue-6 benchmark. authgate against a plain nginx reverse proxy and HAProxy
# checking the same JWT, on one machine, with the same static backend, token and connection counts.
#
# Usage:
#   bench/run.sh                 throughput: every mode x every target, ROUNDS rounds (median),
#                                then p99 at a fixed rate of 50% of the maximum load (about 16 min)
#   bench/run.sh memory          idle RSS, 1 GiB down and up, start-to-/readyz time, RSS per idle
#                                TLS connection; then the footprint (issue 20): RSS after a login
#                                burst and 5 s later, after a TLS keep-alive run, per idle TLS
#                                connection, for BASELINE (when set) and this build side by side
#   bench/run.sh footprint       the footprint only (BASELINE=OLD_BINARY for the before column)
#   bench/run.sh all             memory, then throughput
#   ROUNDS=1 DURATION=5 bench/run.sh    a quick look (about 3 min)
#
# Settings (environment):
#   ROUNDS=3            rounds; each figure is the median over the rounds (rounds are interleaved)
#   DURATION=10         seconds per measurement
#   CONNS=64            connections (wrk -t1 -cCONNS, h2load -t1 -cCONNS)
#   H2_STREAMS=8        concurrent streams per h2 connection (h2load -m)
#   MODES="http1 tls h2 newtls"   (also: resumed = wrk -H 'Connection: close', TLS sessions resumed)
#   TARGETS="direct nginx haproxy-jwt authgate-jwt authgate-api"
#   RATE=               fixed-rate phase req/s (default: 50% of min(nginx, authgate-jwt) TLS req/s)
#   FIXED_RATE=1        0 skips the fixed-rate phase
#   HOLD_CONNS=10000    idle TLS connections for `memory`
#   STARTS=5            authgate starts timed for `memory`
#   BASELINE=           an older authgate binary: the footprint's "before" column, and in throughput
#                       the target authgate-before (JWT, TLS modes only), beside authgate-jwt
#   LOGINS=100 LOGINS_AT_ONCE=10   the footprint's login burst (default password cost, 2 hashing threads)
#   TLS_RUN=60          seconds of the footprint's TLS keep-alive run (wrk -c$CONNS), per target
#   IDLE_CONNS=2000     idle TLS connections per authgate binary in the footprint
#   NO_BUILD=1          use target/release/authgate as it is (default: cargo build --release --locked)
#   BIN=                another authgate binary to measure (implies nothing about NO_BUILD)
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw tool output)
#
# Placement: each proxy runs alone on core 1 with one worker (authgate TOKIO_WORKER_THREADS=1,
# nginx worker_processes 1, HAProxy nbthread 1); the static backend (nginx, one worker) and the
# load generator (wrk / h2load, one thread) share core 0. Loopback only. Installs nginx, haproxy,
# wrk and nghttp2-client (h2load) with apt-get when missing. Every process it starts is stopped on
# exit. Any non-2xx answer or socket error during a measurement aborts the run: a proxy answering
# 401 quickly would be a bogus win.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
HELP="$BENCH/bench_helpers.py"
CMD="${1:-throughput}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"; DURATION="${DURATION%s}"
CONNS="${CONNS:-64}"
H2_STREAMS="${H2_STREAMS:-8}"
MODES="${MODES:-http1 tls h2 newtls}"
TARGETS="${TARGETS:-direct nginx haproxy-jwt authgate-jwt authgate-api}"
RATE="${RATE:-}"
FIXED_RATE="${FIXED_RATE:-1}"
HOLD_CONNS="${HOLD_CONNS:-10000}"
STARTS="${STARTS:-5}"
BASELINE="${BASELINE:-}"
LOGINS="${LOGINS:-100}"
LOGINS_AT_ONCE="${LOGINS_AT_ONCE:-10}"
TLS_RUN="${TLS_RUN:-60}"; TLS_RUN="${TLS_RUN%s}"
IDLE_CONNS="${IDLE_CONNS:-2000}"
BIN="${BIN:-$ROOT/target/release/authgate}"
# Not a real secret: a fixed 40-byte HS256 key used only by this loopback benchmark.
JWT_SECRET="bench-only-hs256-secret-0123456789abcdef"
JWT_SUB="bench-user-42"
LOADGEN_CPU=0
PROXY_CPU=1

case "$CMD" in
    throughput | memory | footprint | all) ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown command: $CMD (throughput | memory | footprint | all)" >&2; exit 2 ;;
esac

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# ---------------------------------------------------------------- tools, build, temp dir, cleanup
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (found $(nproc))"
install_missing nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl taskset:util-linux ss:iproute2 python3:python3
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

TMP="$(mktemp -d /tmp/authgate-bench.XXXXXX)"
chmod 755 "$TMP" # nginx workers run as nobody
mkdir -p "$TMP/logs" "$TMP/raw" "$TMP/nginx-tmp"
PIDS=()
install_trap

if [ "${NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release --locked"
    (cd "$ROOT" && timeout 1800 cargo build --release --locked --bin authgate >"$TMP/logs/build.log" 2>&1) ||
        { tail -30 "$TMP/logs/build.log" >&2; die "cargo build failed (log: $TMP/logs/build.log)"; }
fi
[ -x "$BIN" ] || die "$BIN missing"

# Open files: 10,000 idle connections need more than the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" = unlimited ] && NOFILE=65536
MAXCONN=$((NOFILE - 1000 > 20000 ? 20000 : NOFILE - 1000))

# ---------------------------------------------------------------- keys, tokens, ports, configs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
chmod 600 "$TMP/key.pem"
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"
chmod 600 "$TMP/haproxy.pem"
JWT="$(python3 "$HELP" jwt "$JWT_SECRET" "$JWT_SUB")"
BAD_JWT="${JWT%?????}AAAAA"

mapfile -t P < <(python3 "$HELP" ports 19)
BACKEND_PORT=${P[0]} BACKEND_TLS_PORT=${P[1]}
NGINX_PORT=${P[2]} NGINX_TLS_PORT=${P[3]}
HAPROXY_PORT=${P[4]} HAPROXY_TLS_PORT=${P[5]}
AG_PORT=${P[6]} AG_ADMIN=${P[7]} AG_TLS_PORT=${P[8]} AG_TLS_ADMIN=${P[9]}
AG_START_PORT=${P[10]} AG_START_ADMIN=${P[11]}
SINK_PORT=${P[12]} AG_XFER_PORT=${P[13]} AG_XFER_ADMIN=${P[14]}
AG_FP_PORT=${P[15]} AG_FP_ADMIN=${P[16]} AG_BASE_PORT=${P[17]} AG_BASE_ADMIN=${P[18]}

COMMON=(TMP="$TMP" NOFILE="$NOFILE" MAXCONN="$MAXCONN" BACKEND_PORT="$BACKEND_PORT")
render "$BENCH/nginx-backend.conf" "$TMP/nginx-backend.conf" "${COMMON[@]}" BACKEND_TLS_PORT="$BACKEND_TLS_PORT"
render "$BENCH/nginx-proxy.conf" "$TMP/nginx-proxy.conf" "${COMMON[@]}" \
    NGINX_PORT="$NGINX_PORT" NGINX_TLS_PORT="$NGINX_TLS_PORT"
render "$BENCH/haproxy.cfg" "$TMP/haproxy.cfg" "${COMMON[@]}" \
    HAPROXY_PORT="$HAPROXY_PORT" HAPROXY_TLS_PORT="$HAPROXY_TLS_PORT" JWT_SECRET="$JWT_SECRET"
TLS_SECTION="[tls]
cert = \"$TMP/cert.pem\"
key = \"$TMP/key.pem\""
render "$BENCH/authgate.toml" "$TMP/authgate-plain.toml" "${COMMON[@]}" \
    PORT="$AG_PORT" ADMIN_PORT="$AG_ADMIN" PLAINTEXT="plaintext = true" TLS=""
render "$BENCH/authgate.toml" "$TMP/authgate-tls.toml" "${COMMON[@]}" \
    PORT="$AG_TLS_PORT" ADMIN_PORT="$AG_TLS_ADMIN" PLAINTEXT="" TLS="$TLS_SECTION"
render "$BENCH/authgate.toml" "$TMP/authgate-start.toml" "${COMMON[@]}" \
    PORT="$AG_START_PORT" ADMIN_PORT="$AG_START_ADMIN" PLAINTEXT="" TLS="$TLS_SECTION"
# The 1 GiB transfers go to the Python sink (bench_helpers.py sink), not the static nginx.
render "$BENCH/authgate.toml" "$TMP/authgate-xfer.toml" TMP="$TMP" NOFILE="$NOFILE" MAXCONN="$MAXCONN" \
    BACKEND_PORT="$SINK_PORT" PORT="$AG_XFER_PORT" ADMIN_PORT="$AG_XFER_ADMIN" PLAINTEXT="" TLS="$TLS_SECTION"
# The footprint's instances: each binary on a store of its own (an older binary may not know a newer
# schema), with the issue's hashing set-up (2 threads, default cost) though pinned to one core.
FP_EXTRA="[password]
hash_concurrency = 2"
for fp in before after; do
    mkdir -p "$TMP/fp-$fp"
    render "$BENCH/authgate.toml" "$TMP/authgate-fp-$fp.toml" TMP="$TMP/fp-$fp" NOFILE="$NOFILE" MAXCONN="$MAXCONN" \
        BACKEND_PORT="$BACKEND_PORT" PORT="$AG_FP_PORT" ADMIN_PORT="$AG_FP_ADMIN" PLAINTEXT="" TLS="$TLS_SECTION
$FP_EXTRA"
done
AUTHGATE=(env TOKIO_WORKER_THREADS=1 JWT_SECRET_KEY="$JWT_SECRET" "$BIN" --config)

# ---------------------------------------------------------------- processes
declare -A PID_OF
start() { # start NAME CPU CMD...
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$TMP/logs/$name.log" 2>&1 &
    PIDS+=($!)
    PID_OF[$name]=$!
}
wait_tcp() { # wait_tcp NAME PORT
    local i
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        kill -0 "${PID_OF[$1]}" 2>/dev/null || { cat "$TMP/logs/$1.log" >&2; die "$1 exited at start"; }
        sleep 0.05
    done
    cat "$TMP/logs/$1.log" >&2
    die "$1 is not listening on $2"
}
wait_ready() { # wait_ready NAME ADMIN_PORT
    local i
    for i in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/readyz")" = 200 ] && return 0
        kill -0 "${PID_OF[$1]}" 2>/dev/null || { cat "$TMP/logs/$1.log" >&2; die "$1 exited at start"; }
        sleep 0.05
    done
    cat "$TMP/logs/$1.log" >&2
    die "$1: /readyz not 200 after 15 s"
}
rss_kib() { # VmRSS of a pid and its children (nginx: master + worker)
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

log "temp dir $TMP; starting backend (core $LOADGEN_CPU) and proxies (core $PROXY_CPU)"
start backend "$LOADGEN_CPU" "$NGINX" -e "$TMP/logs/backend-error.log" -c "$TMP/nginx-backend.conf"
start nginx "$PROXY_CPU" "$NGINX" -e "$TMP/logs/nginx-proxy-error.log" -c "$TMP/nginx-proxy.conf"
start haproxy "$PROXY_CPU" "$HAPROXY" -db -f "$TMP/haproxy.cfg"
start authgate-plain "$PROXY_CPU" "${AUTHGATE[@]}" "$TMP/authgate-plain.toml"
wait_tcp backend "$BACKEND_PORT"
wait_tcp nginx "$NGINX_TLS_PORT"
wait_tcp haproxy "$HAPROXY_TLS_PORT"
wait_ready authgate-plain "$AG_ADMIN" # creates and migrates the store before the second instance opens it
start authgate-tls "$PROXY_CPU" "${AUTHGATE[@]}" "$TMP/authgate-tls.toml"
wait_ready authgate-tls "$AG_TLS_ADMIN"
if [ -n "$BASELINE" ] && [ "$CMD" != memory ] && [ "$CMD" != footprint ]; then
    [ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable"
    mkdir -p "$TMP/base"
    render "$BENCH/authgate.toml" "$TMP/authgate-base.toml" TMP="$TMP/base" NOFILE="$NOFILE" MAXCONN="$MAXCONN" \
        BACKEND_PORT="$BACKEND_PORT" PORT="$AG_BASE_PORT" ADMIN_PORT="$AG_BASE_ADMIN" PLAINTEXT="" TLS="$TLS_SECTION"
    start authgate-before "$PROXY_CPU" env TOKIO_WORKER_THREADS=1 JWT_SECRET_KEY="$JWT_SECRET" "$BASELINE" \
        --config "$TMP/authgate-base.toml"
    wait_ready authgate-before "$AG_BASE_ADMIN"
    [[ " $TARGETS " == *" authgate-before "* ]] || TARGETS="$TARGETS authgate-before"
fi
sleep 1

# ---------------------------------------------------------------- memory and start-up
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# 1 GiB down, then 1 GiB up, through a fresh authgate (TLS, HTTP/1.1, the default 1 GiB body limit)
# to the Python sink; the growth of authgate's peak RSS (VmHWM) over its RSS before.
run_transfers() {
    local gib=$((1 << 30)) blob="$TMP/blob-1g" pid rss0 down up hwm_down hwm_up
    truncate -s "$gib" "$blob" # sparse: read back as zeros from the page cache
    start sink "$LOADGEN_CPU" python3 "$HELP" sink "$SINK_PORT"
    start authgate-xfer "$PROXY_CPU" "${AUTHGATE[@]}" "$TMP/authgate-xfer.toml"
    wait_tcp sink "$SINK_PORT"
    wait_ready authgate-xfer "$AG_XFER_ADMIN"
    pid=${PID_OF[authgate-xfer]}
    rss0=$(rss_kib "$pid")
    down=$(taskset -c "$LOADGEN_CPU" curl -sk -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
        -H "Authorization: Bearer $JWT" "https://127.0.0.1:$AG_XFER_PORT/download")
    hwm_down=$(hwm_kib "$pid")
    up=$(taskset -c "$LOADGEN_CPU" curl -sk -T "$blob" -o "$TMP/raw/upload-answer" \
        -w '%{http_code} %{size_upload} %{time_total}' \
        -H "Authorization: Bearer $JWT" "https://127.0.0.1:$AG_XFER_PORT/upload")
    hwm_up=$(hwm_kib "$pid")
    rm -f "$blob"
    [ "$down" = "200 $gib ${down##* }" ] || die "1 GiB download through authgate: $down"
    [ "$up" = "200 $gib ${up##* }" ] && [ "$(cat "$TMP/raw/upload-answer")" = "received $gib" ] ||
        die "1 GiB upload through authgate: $up, backend: $(cat "$TMP/raw/upload-answer")"
    TRANSFERS="| 1 GiB download | ${down##* } | $(awk -v a="$hwm_down" -v b="$rss0" 'BEGIN{printf "%.1f", (a-b)/1024}') |
| 1 GiB upload (Content-Length) | ${up##* } | $(awk -v a="$hwm_up" -v b="$rss0" 'BEGIN{printf "%.1f", (a-b)/1024}') |"
    TRANSFER_RSS0=$(awk -v k="$rss0" 'BEGIN{printf "%.1f", k/1024}')
}

run_memory() {
    log "memory: idle RSS, start-to-/readyz, RSS with $HOLD_CONNS idle TLS keep-alive connections"
    local n=$HOLD_CONNS
    if [ "$n" -gt $((MAXCONN - 100)) ]; then
        n=$((MAXCONN - 100))
        log "open-file limit $NOFILE: holding $n connections instead of $HOLD_CONNS"
    fi
    local idle_ag idle_ng idle_hp
    idle_ag=$(rss_kib "${PID_OF[authgate-tls]}")
    idle_ng=$(rss_kib "${PID_OF[nginx]}")
    idle_hp=$(rss_kib "${PID_OF[haproxy]}")

    log "  1 GiB download and upload through authgate"
    run_transfers

    local starts
    starts=$(timeout 300 taskset -c "$LOADGEN_CPU" python3 "$HELP" startup "$STARTS" "$AG_START_ADMIN" -- \
        taskset -c "$PROXY_CPU" "${AUTHGATE[@]}" "$TMP/authgate-start.toml") || die "start-up timing failed"

    local name port res rows=""
    for name in nginx haproxy authgate-tls; do
        case $name in
            nginx) port=$NGINX_TLS_PORT ;; haproxy) port=$HAPROXY_TLS_PORT ;; authgate-tls) port=$AG_TLS_PORT ;;
        esac
        log "  holding $n TLS connections on $name"
        res=$(timeout 600 taskset -c "$LOADGEN_CPU" python3 "$HELP" hold "$port" "$n" "$JWT" "${PID_OF[$name]}") ||
            die "hold on $name failed"
        echo "$res" >"$TMP/raw/hold-$name.json"
        rows+="$(python3 - "$name" "$res" <<'PY'
import json, sys
name, r = sys.argv[1], json.loads(sys.argv[2])
per = (r["rss_after_kib"] - r["rss_before_kib"]) / max(r["open_after_3s"], 1)
note = "" if r["failures"] == 0 else f" ({r['failures']} failed: {', '.join(r['failure_kinds'])})"
print(f"| {name} | {r['rss_before_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | "
      f"{r['ok']}/{r['requested']}{note} | {r['open_after_3s']} | {per:.1f} |")
PY
)"$'\n'
        sleep 2
    done

    echo
    echo "## Memory and start-up"
    echo
    echo "| process | idle RSS MiB |"
    echo "|---|---:|"
    echo "| authgate (TLS instance, 1 worker, no traffic yet) | $(awk -v k="$idle_ag" 'BEGIN{printf "%.1f", k/1024}') |"
    echo "| nginx proxy (master + 1 worker) | $(awk -v k="$idle_ng" 'BEGIN{printf "%.1f", k/1024}') |"
    echo "| haproxy (1 thread) | $(awk -v k="$idle_hp" 'BEGIN{printf "%.1f", k/1024}') |"
    echo
    echo "1 GiB through authgate (TLS, HTTP/1.1, curl to the Python sink, one after the other); peak RSS"
    echo "(VmHWM) over the RSS before the first, $TRANSFER_RSS0 MiB:"
    echo
    echo "| transfer | seconds | peak RSS growth MiB |"
    echo "|---|---:|---:|"
    echo "$TRANSFERS"
    echo
    echo "authgate start to /readyz 200 (existing SQLite store, ms, $STARTS starts): $starts" \
        "(median $(printf '%s\n' $starts | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}') ms)"
    echo
    echo "Idle TLS 1.3 keep-alive connections, each after one authenticated GET (python asyncio client," \
        "128 handshakes in flight); RSS of the proxy process tree before/after, per connection still open 3 s later:"
    echo
    echo "| proxy | RSS before MiB | RSS after MiB | connections ok | open after 3 s | KiB per connection |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s' "$rows"
    echo
}

# ---------------------------------------------------------------- footprint (issue 20)
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# wrk_rss NAME PORT PID: TLS_RUN seconds of TLS keep-alive GETs (wrk -c$CONNS, the JWT), then the
# process tree's RSS in KiB.
wrk_rss() {
    local out="$TMP/raw/fp-wrk-$1.txt" parsed rps p50 p99 bad errs
    timeout $((TLS_RUN + 60)) taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${TLS_RUN}s" --latency \
        -H "Authorization: Bearer $JWT" "https://localhost:$2/" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    parsed=$(python3 "$HELP" wrk "$out") || { cat "$out" >&2; die "cannot parse wrk output"; }
    read -r rps p50 p99 bad errs <<<"$parsed"
    [ "$bad" = 0 ] && [ "$errs" = 0 ] || { cat "$out" >&2; die "$1: $bad non-2xx, $errs socket errors in the TLS run"; }
    rss_kib "$3"
}

# footprint_of LABEL BINARY: the figures of one authgate binary, into FP_<field>[LABEL].
declare -A FP_IDLE FP_PEAK FP_AFTER FP_SETTLED FP_OK FP_TLS_IDLE FP_TLS FP_CONN
footprint_of() {
    local label=$1 bin=$2 pid res
    local cmd=(env TOKIO_WORKER_THREADS=1 JWT_SECRET_KEY="$JWT_SECRET" "$bin" --config "$TMP/authgate-fp-$label.toml")
    # 1. The login burst, on a fresh instance.
    start "fp-$label-logins" "$PROXY_CPU" "${cmd[@]}"
    pid=${PID_OF[fp-$label-logins]}
    wait_ready "fp-$label-logins" "$AG_FP_ADMIN"
    sleep 1
    log "  footprint $label: $LOGINS logins, $LOGINS_AT_ONCE at a time"
    res=$(timeout 600 python3 "$HELP" logins "$AG_FP_PORT" "$pid" "$LOGINS" "$LOGINS_AT_ONCE" 5) || die "logins failed"
    echo "$res" >"$TMP/raw/fp-$label-logins.json"
    read -r FP_IDLE[$label] FP_PEAK[$label] FP_AFTER[$label] FP_SETTLED[$label] FP_OK[$label] < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["idle_kib"], r["hwm_kib"], r["after_kib"], r["settled_kib"], "%d/%d" % (r["ok"], r["total"]))' "$res")
    stop "$pid"
    # 2. The TLS run and the idle connections, on a fresh instance after one login (as in the issue).
    start "fp-$label-tls" "$PROXY_CPU" "${cmd[@]}"
    pid=${PID_OF[fp-$label-tls]}
    wait_ready "fp-$label-tls" "$AG_FP_ADMIN"
    sleep 1
    FP_TLS_IDLE[$label]=$(rss_kib "$pid")
    python3 "$HELP" logins "$AG_FP_PORT" "$pid" 1 1 0 >/dev/null || die "login failed"
    log "  footprint $label: ${TLS_RUN}s TLS keep-alive run"
    FP_TLS[$label]=$(wrk_rss "authgate-$label" "$AG_FP_PORT" "$pid")
    sleep 2
    log "  footprint $label: $IDLE_CONNS idle TLS connections"
    res=$(timeout 600 taskset -c "$LOADGEN_CPU" python3 "$HELP" hold "$AG_FP_PORT" "$IDLE_CONNS" "$JWT" "$pid") ||
        die "hold failed"
    FP_CONN[$label]=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("%.1f" % ((r["rss_after_kib"] - r["rss_before_kib"]) / max(r["open_after_3s"], 1)))' "$res")
    stop "$pid"
}

# The footprint's TLS run on nginx and HAProxy, while they are fresh (before `memory` holds 10,000
# connections on them, which they keep memory for).
FP_NG="" FP_HP=""
footprint_peers() {
    log "footprint: nginx and HAProxy, ${TLS_RUN}s TLS keep-alive run each"
    FP_NG=$(wrk_rss nginx "$NGINX_TLS_PORT" "${PID_OF[nginx]}")
    FP_HP=$(wrk_rss haproxy "$HAPROXY_TLS_PORT" "${PID_OF[haproxy]}")
}

run_footprint() {
    local labels=after l
    [ -n "$FP_NG" ] || footprint_peers
    local ng=$FP_NG hp=$FP_HP
    if [ -n "$BASELINE" ]; then
        [ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable"
        labels="before after"
        footprint_of before "$BASELINE"
    fi
    footprint_of after "$BIN"
    local kib=19456 # password.memory_kib's default
    echo
    echo "## Footprint (issue 20)"
    echo
    echo "authgate with TOKIO_WORKER_THREADS=1 on core $PROXY_CPU, embedded store, default argon2 cost" \
        "(m = $kib KiB), hash_concurrency = 2. Logins: one register, then $LOGINS logins $LOGINS_AT_ONCE at a time" \
        "over HTTPS, each on a fresh instance. TLS run: wrk -t1 -c$CONNS -d${TLS_RUN}s after one login, on" \
        "another fresh instance, then $IDLE_CONNS idle TLS connections on it. before: ${BASELINE:-none}."
    echo
    local head="| RSS MiB |" rule="|---|"
    for l in $labels; do head+=" authgate $l |"; rule+="---:|"; done
    echo "$head nginx | HAProxy |"
    echo "$rule---:|---:|"
    row() { # row TITLE ARRAY NGINX HAPROXY
        local line="| $1 |" l v
        local -n arr=$2
        for l in $labels; do v=${arr[$l]}; [[ "$v" == */* || "$v" == *.* ]] && line+=" $v |" || line+=" $(mib "$v") |"; done
        echo "$line $3 | $4 |"
    }
    row "idle (login instance)" FP_IDLE "" ""
    row "peak during the burst (VmHWM)" FP_PEAK "" ""
    row "right after $LOGINS logins" FP_AFTER "" ""
    row "5 s after the burst" FP_SETTLED "" ""
    row "logins answered 200" FP_OK "" ""
    row "idle (TLS instance)" FP_TLS_IDLE "" ""
    row "after ${TLS_RUN} s TLS keep-alive at $CONNS connections" FP_TLS "$(mib "$ng")" "$(mib "$hp")"
    row "KiB per idle TLS connection ($IDLE_CONNS)" FP_CONN "see the table above" "see the table above"
    echo
    python3 - "${FP_IDLE[after]}" "${FP_PEAK[after]}" "${FP_SETTLED[after]}" "${FP_TLS_IDLE[after]}" \
        "${FP_TLS[after]}" "${FP_CONN[after]}" "$kib" <<'PY'
import sys
idle, peak, settled, tls_idle, tls, conn, kib = map(float, sys.argv[1:])
checks = [
    ("peak <= idle + 2 x memory_kib + 8 MiB", peak, idle + 2 * kib + 8192),
    ("5 s after <= idle + 8 MiB", settled, idle + 8192),
    (f"after the TLS run <= 1.5 x idle + {64} x per-connection", tls, 1.5 * tls_idle + 64 * conn),
    ("idle <= 12.6 MiB (the issue's figure)", idle, 12.6 * 1024),
]
print("| issue 20 target (this build) | measured MiB | bound MiB | met? |")
print("|---|---:|---:|---|")
for name, v, bound in checks:
    print(f"| {name} | {v / 1024:.1f} | {bound / 1024:.1f} | {'yes' if v <= bound else '**no**'} |")
PY
    echo
    # How much of the code layout (build.rs, bench/text-order.txt) this build still matches.
    python3 "$BENCH/text_order.py" --check "$BIN" || true
}

# ---------------------------------------------------------------- throughput
RESULTS="$TMP/results.tsv"
LATENCY="$TMP/latency.tsv"
: >"$RESULTS"
: >"$LATENCY"
OFFERED=""

port_of() { # port_of TARGET MODE
    local tls=1
    [ "$2" = http1 ] && tls=0
    case "$1" in
        direct) [ $tls = 1 ] && echo "$BACKEND_TLS_PORT" || echo "$BACKEND_PORT" ;;
        nginx) [ $tls = 1 ] && echo "$NGINX_TLS_PORT" || echo "$NGINX_PORT" ;;
        haproxy-jwt) [ $tls = 1 ] && echo "$HAPROXY_TLS_PORT" || echo "$HAPROXY_PORT" ;;
        authgate-before) echo "$AG_BASE_PORT" ;; # TLS only: skipped in http1
        authgate-*) [ $tls = 1 ] && echo "$AG_TLS_PORT" || echo "$AG_PORT" ;;
        *) die "unknown target $1" ;;
    esac
}
# TLS URLs name localhost (127.0.0.1 here) so the clients send a host name as SNI: with an IP
# literal, rustls logs a warning per handshake, which would bill authgate for a client quirk.
url_of() { [ "$2" = http1 ] && echo "http://127.0.0.1:$(port_of "$1" "$2")/" || echo "https://localhost:$(port_of "$1" "$2")/"; }
token_of() { [ "$1" = authgate-api ] && echo "$API_TOKEN" || echo "$JWT"; }
expected_body() {
    case "$1" in
        direct | nginx) echo "ok forged" ;; authgate-api) echo "ok $API_USER" ;; *) echo "ok $JWT_SUB" ;;
    esac
}

create_api_token() {
    local base="https://127.0.0.1:$AG_TLS_PORT" resp access
    curl -sk -o /dev/null -X POST "$base/api/auth/register" -H 'Content-Type: application/json' \
        -d '{"username":"bench","password":"bench-password-123","email":"bench@example.com"}'
    resp=$(curl -sk -X POST "$base/api/auth/login" -H 'Content-Type: application/json' \
        -d '{"username":"bench","password":"bench-password-123"}')
    access=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$resp") ||
        die "login failed: $resp"
    resp=$(curl -sk -X POST "$base/api/auth/tokens" -H "Authorization: Bearer $access" \
        -H 'Content-Type: application/json' -d '{"name":"bench"}')
    API_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$resp") ||
        die "token creation failed: $resp"
    API_USER=$(curl -sk "$base/api/auth/me" -H "Authorization: Bearer $access" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("user_id") or d.get("id"))')
    [[ "$API_TOKEN" == agt_* ]] || die "unexpected API token: $API_TOKEN"
}

sanity() { # 200 with the right X-User-Id (a client's X-User-Id: forged replaced by the gateways; passed
    # through by direct and nginx), 401 from the gateways without a credential or with a forged JWT
    local t mode url body code h2
    for mode in http1 tls; do
        for t in $TARGETS; do
            [ "$t" = authgate-before ] && [ "$mode" = http1 ] && continue
            url=$(url_of "$t" "$mode")
            body=$(curl -sk --http1.1 -H "Authorization: Bearer $(token_of "$t")" -H "X-User-Id: forged" "$url")
            [ "$body" = "$(expected_body "$t")" ] || die "$t $mode: body '$body', expected '$(expected_body "$t")'"
            case $t in
                direct | nginx) ;;
                *)
                    for cred in "" "Authorization: Bearer $BAD_JWT"; do
                        code=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' ${cred:+-H "$cred"} "$url")
                        [ "$code" = 401 ] || die "$t $mode: ${cred:-no credential} answered $code, expected 401"
                    done
                    ;;
            esac
        done
    done
    for t in $TARGETS; do
        h2=$(curl -sk --http2 -o /dev/null -w '%{http_version}' -H "Authorization: Bearer $(token_of "$t")" "$(url_of "$t" tls)")
        [ "$h2" = 2 ] || die "$t: no h2 over TLS (got HTTP/$h2)"
    done
    log "sanity: every target 200 with the right X-User-Id (forged one replaced), 401 without/with a forged token, h2 via ALPN"
    local port
    for t in direct nginx haproxy-jwt authgate-jwt; do
        port=$(port_of "$t" tls)
        log "  TLS $t: $(openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
            grep -E '^(New, |Server Temp Key)' | tr '\n' ' ')"
    done
}

measure() { # measure ROUND TARGET MODE -> appends to $RESULTS
    local round=$1 t=$2 mode=$3 url tok out parsed rps p50 p99 bad errs
    url=$(url_of "$t" "$mode")
    tok=$(token_of "$t")
    out="$TMP/raw/$mode-$t-r$round.txt"
    case $mode in
        http1 | tls | resumed)
            local extra=()
            [ "$mode" = resumed ] && extra=(-H "Connection: close")
            timeout $((DURATION + 60)) taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
                -H "Authorization: Bearer $tok" "${extra[@]}" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
            parsed=$(python3 "$HELP" wrk "$out") || { cat "$out" >&2; die "cannot parse wrk output"; }
            read -r rps p50 p99 bad errs <<<"$parsed"
            ;;
        h2 | newtls)
            if [ "$mode" = h2 ]; then
                timeout $((DURATION + 60)) taskset -c "$LOADGEN_CPU" h2load -t1 -c"$CONNS" -m"$H2_STREAMS" \
                    -D "$DURATION" --warm-up-time 1 -H "authorization: Bearer $tok" --log-file "$out.tsv" "$url" \
                    >"$out" 2>&1 || { cat "$out" >&2; die "h2load failed"; }
                grep -q 'Application protocol: h2' "$out" || { cat "$out" >&2; die "$t: h2load did not negotiate h2"; }
            else
                # h2load clients never share a TLS session, so -cN -nN is N full handshakes with one
                # request each, at most N at a time; batches run back to back for DURATION seconds.
                local end=$((SECONDS + DURATION))
                : >"$out"
                : >"$out.tsv"
                while [ "$SECONDS" -lt "$end" ]; do
                    timeout 60 taskset -c "$LOADGEN_CPU" h2load --h1 -t1 -c"$CONNS" -n"$CONNS" \
                        -H "authorization: Bearer $tok" --log-file "$out.batch" "$url" >>"$out" 2>&1 ||
                        { cat "$out" >&2; die "h2load failed"; }
                    cat "$out.batch" >>"$out.tsv"
                done
                rm -f "$out.batch"
            fi
            local failed errored c4 c5 runs n
            read -r rps failed errored c4 c5 runs <<<"$(python3 "$HELP" h2load "$out")"
            read -r n p50 p99 bad <<<"$(python3 "$HELP" h2log "$out.tsv")"
            bad=$((bad + c4 + c5))
            errs=$((failed + errored))
            rm -f "$out.tsv"
            ;;
    esac
    [ "$bad" = 0 ] || { cat "$out" >&2; die "$t $mode: $bad non-2xx responses"; }
    [ "$errs" = 0 ] || { cat "$out" >&2; die "$t $mode: $errs socket errors / failed requests"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$mode" "$rps" "$p50" "$p99" >>"$RESULTS"
    log "  r$round $mode $t: $rps req/s, p50 $p50 ms, p99 $p99 ms"
}

fixed_rate() { # p99 at one fixed offered rate for every target: TLS keep-alive, HTTP/1.1
    local rate=$RATE per t round out n rps p50 p99 bad failed errored c4 c5 runs
    if [ -z "$rate" ]; then
        rate=$(python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    _, t, mode, rps, *_ = line.split("\t")
    if mode == "tls" and t in ("nginx", "authgate-jwt"):
        rows.setdefault(t, []).append(float(rps))
print(int(0.5 * min(statistics.median(v) for v in rows.values())) if len(rows) == 2 else "")
PY
)
        [ -n "$rate" ] || { log "fixed-rate phase skipped: needs the tls mode for nginx and authgate-jwt"; return 0; }
    fi
    per=$(((rate + CONNS - 1) / CONNS))
    OFFERED=$((per * CONNS))
    log "fixed rate: $((per * CONNS)) req/s offered ($per per connection x $CONNS), h2load --h1 over TLS"
    for round in $(seq "$ROUNDS"); do
        for t in $TARGETS; do
            out="$TMP/raw/fixed-$t-r$round.txt"
            timeout $((DURATION + 60)) taskset -c "$LOADGEN_CPU" h2load --h1 -t1 -c"$CONNS" --rps "$per" \
                -D "$DURATION" --warm-up-time 1 -H "authorization: Bearer $(token_of "$t")" --log-file "$out.tsv" \
                "$(url_of "$t" tls)" >"$out" 2>&1 || { cat "$out" >&2; die "h2load failed"; }
            read -r rps failed errored c4 c5 runs <<<"$(python3 "$HELP" h2load "$out")"
            read -r n p50 p99 bad <<<"$(python3 "$HELP" h2log "$out.tsv")"
            rm -f "$out.tsv"
            [ $((bad + c4 + c5 + failed + errored)) = 0 ] || { cat "$out" >&2; die "$t fixed rate: errors"; }
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" fixed "$rps" "$p50" "$p99" >>"$LATENCY"
            log "  r$round fixed $t: $rps req/s, p50 $p50 ms, p99 $p99 ms"
        done
    done
}

run_throughput() {
    create_api_token
    sanity
    log "warm-up: 2 s per target (TLS keep-alive)"
    local t mode round
    for t in $TARGETS; do
        timeout 30 taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d2s -H "Authorization: Bearer $(token_of "$t")" \
            "$(url_of "$t" tls)" >/dev/null 2>&1 || true
    done
    local n_modes n_targets
    n_modes=$(wc -w <<<"$MODES")
    n_targets=$(wc -w <<<"$TARGETS")
    log "throughput: $ROUNDS rounds x $n_modes modes x $n_targets targets x ${DURATION}s" \
        "(about $(((ROUNDS * n_modes * n_targets + ROUNDS * n_targets) * (DURATION + 2) / 60 + 1)) min with the fixed-rate phase)"
    for round in $(seq "$ROUNDS"); do
        for mode in $MODES; do
            for t in $TARGETS; do
                [ "$t" = authgate-before ] && [ "$mode" = http1 ] && continue
                measure "$round" "$t" "$mode"
            done
        done
    done
    [ "$FIXED_RATE" = 1 ] && fixed_rate
    echo
    echo "## authgate issue-6 benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)."
    echo "Proxies alone on core $PROXY_CPU, one worker each; backend nginx and load generator on core $LOADGEN_CPU."
    echo "wrk -t1 -c$CONNS -d${DURATION}s; h2load -t1 -c$CONNS -m$H2_STREAMS -D $DURATION; same JWT (HS256) for" \
        "every target except authgate-api (agt_ token). Versions: $("$NGINX" -v 2>&1 | cut -d' ' -f3)," \
        "HAProxy $("$HAPROXY" -v | head -1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)," \
        "$(h2load --version | head -1), authgate $("$BIN" --version 2>/dev/null | head -1 || echo '?')."
    echo
    python3 "$HELP" report "$RESULTS" "$LATENCY" "$OFFERED"
}

case "$CMD" in
    memory) footprint_peers; run_memory; run_footprint ;;
    footprint) run_footprint ;;
    throughput) run_throughput ;;
    all) footprint_peers; run_memory; run_footprint; run_throughput ;;
esac
