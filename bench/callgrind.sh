#!/usr/bin/env bash
# bench/callgrind.sh: instructions per proxied TLS request, counted with callgrind (repeatable,
# unlike req/s on a shared machine). The figure in README's Performance section.
#
# Usage:
#   bench/callgrind.sh                         target/release/authgate
#   bench/callgrind.sh OLD_BINARY NEW_BINARY   both, one after the other, and NEW/OLD
#
# Each binary runs under `valgrind --tool=callgrind` with one Tokio worker
# (TOKIO_WORKER_THREADS=1), TLS on, the JWT (HS256) path, the bench/authgate.toml settings (log
# level warn, so no access lines) and the static nginx backend of bench/run.sh. Per binary:
# WARMUP requests (h2load --h1 -t1 -cCONNS), `callgrind_control -z`, REQUESTS requests over CONNS
# new TLS keep-alive connections (h2load --h1 -t1 -cCONNS -nREQUESTS, a valid bearer token),
# `callgrind_control -d`, then Ir (instructions, every thread) / REQUESTS. The CONNS TLS handshakes
# are part of the count. Any non-2xx answer or failed request aborts the run: a fast 401 would be a
# bogus win. The binaries are not built here (cargo build --release --locked first).
# Runs on one binary agree within about +-0.3% (probably how the requests fall into wake-ups, more
# varied on a busy machine), so a difference under 0.6% between two single runs is noise; ROUNDS=3
# narrows that. About 15 s per binary and round.
#
# Settings (environment):
#   WARMUP=500          warm-up requests before the counters are zeroed
#   REQUESTS=5000       counted requests
#   CONNS=8             TLS keep-alive connections
#   ROUNDS=1            runs per binary (the binaries take turns); each figure is the median
#   KEEP_TMP=1          keep the temp dir (configs, logs, callgrind dumps for callgrind_annotate)
#   POLICY=FILE         TOML appended to every binary's config, say bench/policy-50.toml (50 rules,
#                       the request matching the last); run once without and once with to compare
#   PROFILES="header rag_modulo ragflow"
#                       measure each binary once per `upstream.profile` named here, taking turns in
#                       every round, ratios to the first. Each profile is set with
#                       AUTHGATE_UPSTREAM__PROFILE, and its settings come from
#                       bench/profile-<name>.toml (`_` spelt `-`), appended to the config. With
#                       PROFILES set, the JWT's subject is a real account (`authgate user add` in
#                       each run's store: rag_modulo reads its name and email, ragflow needs a key
#                       stored for it with `authgate backend-key set`), and each run checks what the
#                       backend received in `Authorization`: nothing (header), a JWT that is not the
#                       client's (rag_modulo), the stored key (ragflow). Not with POLICY (its last
#                       rule names bench-user-42, which is not an account).
#
# Loopback only. Installs valgrind, nginx, nghttp2-client (h2load), curl and openssl with apt-get
# when missing. Every process it starts is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
HELP="$BENCH/bench_helpers.py"
WARMUP="${WARMUP:-500}"
REQUESTS="${REQUESTS:-5000}"
CONNS="${CONNS:-8}"
ROUNDS="${ROUNDS:-1}"
PROFILES="${PROFILES:-}"
# Not a real secret: the fixed HS256 key of bench/run.sh, used only on loopback.
JWT_SECRET="bench-only-hs256-secret-0123456789abcdef"
JWT_SUB="bench-user-42"
# Not a real RAGFlow key: what backend-key set stores for the bench account with PROFILES=...ragflow.
RAGFLOW_KEY="ragflow-bench-only-key-0123456789abcdef"
LOADGEN_CPU=0
PROXY_CPU=1

log() { printf '[callgrind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

case "${1:-}" in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
BINS=()
for b in "${@:-$ROOT/target/release/authgate}"; do
    [ -x "$b" ] || die "$b: not an executable (build it: cargo build --release --locked)"
    BINS+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")")
done
for n in "$WARMUP" "$REQUESTS" "$CONNS" "$ROUNDS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "WARMUP, REQUESTS, CONNS and ROUNDS must be positive integers"
done
# CONFIGS: "binary-index profile" pairs, measured in this order in every round.
CONFIGS=()
for idx in "${!BINS[@]}"; do
    if [ -z "$PROFILES" ]; then
        CONFIGS+=("$idx -")
        continue
    fi
    [ -z "${POLICY:-}" ] || die "PROFILES and POLICY do not go together (the policy's last rule names bench-user-42)"
    for prof in $PROFILES; do
        case "$prof" in
            header | rag_modulo | ragflow) ;;
            *) die "PROFILES: '$prof' is not a profile (header, rag_modulo or ragflow)" ;;
        esac
        [ "$prof" = header ] || [ -f "$BENCH/profile-${prof//_/-}.toml" ] || die "no $BENCH/profile-${prof//_/-}.toml"
        CONFIGS+=("$idx $prof")
    done
done

# ---------------------------------------------------------------- tools, temp dir, cleanup
install_missing taskset:util-linux valgrind:valgrind callgrind_control:valgrind nginx:nginx h2load:nghttp2-client curl:curl openssl:openssl python3:python3
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
# Pinned like bench/run.sh: authgate alone on core 1, nginx and h2load on core 0.
[ "$(nproc)" -ge 2 ] || PROXY_CPU=0

TMP="$(mktemp -d /tmp/authgate-callgrind.XXXXXX)"
chmod 755 "$TMP" # nginx workers run as nobody
mkdir -p "$TMP/logs" "$TMP/nginx-tmp"
PIDS=()
install_trap

# ---------------------------------------------------------------- keys, token, ports, backend
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
chmod 600 "$TMP/key.pem"

mapfile -t P < <(python3 "$HELP" ports $((2 + 2 * ${#CONFIGS[@]} * ROUNDS)))
BACKEND_PORT=${P[0]} BACKEND_TLS_PORT=${P[1]}

render "$BENCH/nginx-backend.conf" "$TMP/nginx-backend.conf" TMP="$TMP" NOFILE=4096 \
    BACKEND_PORT="$BACKEND_PORT" BACKEND_TLS_PORT="$BACKEND_TLS_PORT"

start backend "$LOADGEN_CPU" "$NGINX" -e "$TMP/logs/backend-error.log" -c "$TMP/nginx-backend.conf"
BACKEND_PID=$STARTED
for i in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$BACKEND_PORT") 2>/dev/null && break
    kill -0 "$BACKEND_PID" 2>/dev/null || { cat "$TMP/logs/backend.log" >&2; die "nginx exited at start"; }
    [ "$i" = 200 ] && die "nginx is not listening on $BACKEND_PORT"
    sleep 0.05
done

# ---------------------------------------------------------------- one binary
# h2load_run OUT N: N requests over CONNS TLS keep-alive connections (HTTP/1.1); dies unless every
# one was answered 2xx.
h2load_run() {
    local out=$1 n=$2 c=$CONNS
    [ "$c" -gt "$n" ] && c=$n
    waited "$out" taskset -c "$LOADGEN_CPU" timeout 900 h2load --h1 -t1 -c"$c" -n"$n" \
        -H "authorization: Bearer $JWT" "https://localhost:$PORT/" || { cat "$out" >&2; die "h2load failed"; }
    grep -q '^Application protocol: http/1.1' "$out" || { cat "$out" >&2; die "h2load did not speak HTTP/1.1 over TLS"; }
    grep -Eq "^requests: $n total, $n started, $n done, $n succeeded, 0 failed, 0 errored" "$out" &&
        grep -Eq "^status codes: $n 2xx, 0 3xx, 0 4xx, 0 5xx" "$out" ||
        { cat "$out" >&2; die "not every one of the $n requests was answered 2xx"; }
}

control() { # control PID OPTION LOG: callgrind_control OPTION PID (through vgdb), checked
    waited "$3" timeout 120 callgrind_control "$2" "$1" && grep -q 'OK\.' "$3" ||
        { cat "$3" >&2; die "callgrind_control $2 $1 failed"; }
}

# measure RUN BINARY PROFILE: sets IR (instructions, every thread, over the REQUESTS counted
# requests); RUN numbers the authgate starts from 0 (fresh ports, store and logs for each); PROFILE
# is `-` without PROFILES (today's set-up: a JWT for bench-user-42, who has no account)
measure() {
    local run=$1 bin=$2 prof=$3 dir="$TMP/run$1" pid i body code dump ir summary sub seen
    local env=(env -u RUST_LOG JWT_SECRET_KEY="$JWT_SECRET")
    mkdir -p "$dir"
    PORT=${P[2 + 2 * run]}
    local admin=${P[3 + 2 * run]}
    render "$BENCH/authgate.toml" "$dir/authgate.toml" TMP="$dir" MAXCONN=1000 BACKEND_PORT="$BACKEND_PORT" \
        PORT="$PORT" ADMIN_PORT="$admin" PLAINTEXT="" TLS="[tls]
cert = \"$TMP/cert.pem\"
key = \"$TMP/key.pem\""
    [ -z "${POLICY:-}" ] || cat "$POLICY" >>"$dir/authgate.toml"
    sub=$JWT_SUB
    if [ "$prof" != - ]; then
        # TOML cannot reopen [upstream], so the profile's name comes from the environment.
        env+=(AUTHGATE_UPSTREAM__PROFILE="$prof")
        [ "$prof" = header ] || cat "$BENCH/profile-${prof//_/-}.toml" >>"$dir/authgate.toml"
        printf '%s\n' "bench password 0123456789" | "${env[@]}" "$bin" --config "$dir/authgate.toml" \
            user add bench --email bench@example.com --password-stdin >"$dir/user.txt" 2>&1 ||
            { cat "$dir/user.txt" >&2; die "authgate user add failed"; }
        sub=$(sed -n 's/^created user bench (\(.*\))$/\1/p' "$dir/user.txt")
        [ -n "$sub" ] || { cat "$dir/user.txt" >&2; die "no user id in the output of authgate user add"; }
        if [ "$prof" = ragflow ]; then
            printf '%s\n' "$RAGFLOW_KEY" | "${env[@]}" "$bin" --config "$dir/authgate.toml" \
                backend-key set --user bench >"$dir/key.txt" 2>&1 ||
                { cat "$dir/key.txt" >&2; die "authgate backend-key set failed"; }
        fi
    fi
    JWT="$(python3 "$HELP" jwt "$JWT_SECRET" "$sub")"
    # RUST_LOG would override the config's log level (and so whether access lines are written).
    start "authgate$run" "$PROXY_CPU" "${env[@]}" TOKIO_WORKER_THREADS=1 \
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$bin" --config "$dir/authgate.toml"
    pid=$STARTED
    for i in $(seq 1200); do # up to 120 s: start-up under callgrind is slow
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz")" = 200 ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/logs/authgate$run.log" >&2; die "authgate exited at start"; }
        [ "$i" = 1200 ] && { cat "$TMP/logs/authgate$run.log" >&2; die "authgate: /readyz not 200 after 120 s"; }
        sleep 0.1
    done
    # The JWT path for real: the backend sees the token's subject; no token, no entry.
    body=$(curl -sk --http1.1 -H "Authorization: Bearer $JWT" "https://localhost:$PORT/")
    [ "$body" = "ok $sub" ] || die "authgate with the token answered '$body', expected 'ok $sub'"
    code=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' "https://localhost:$PORT/")
    [ "$code" = 401 ] || die "authgate without a token answered $code, expected 401"
    # What the profile put in the backend's Authorization (never the client's bearer).
    seen=$(curl -sk --http1.1 -H "Authorization: Bearer $JWT" "https://localhost:$PORT/_bench/authorization")
    case "$prof" in
        - | header) [ "$seen" = "authorization: " ] || die "header profile: the backend saw '$seen'" ;;
        rag_modulo) [[ "$seen" == "authorization: Bearer ey"* && "$seen" != *"$JWT"* ]] ||
            die "rag_modulo profile: the backend saw '$seen', not a JWT of the gateway's" ;;
        ragflow) [ "$seen" = "authorization: Bearer $RAGFLOW_KEY" ] ||
            die "ragflow profile: the backend did not see the stored key" ;;
    esac

    h2load_run "$dir/warmup.txt" "$WARMUP"
    control "$pid" -z "$dir/zero.log"
    h2load_run "$dir/h2load.txt" "$REQUESTS"
    control "$pid" -d "$dir/dump.log"
    dump="$dir/callgrind.out.1"
    [ -s "$dump" ] || die "no callgrind dump at $dump"
    stop "$pid"
    # One file for every thread (no --separate-threads): `totals:` is the sum of its costs; the
    # events line is `Ir` alone (no cache simulation), so the first number is the instructions.
    grep -q '^events: Ir$' "$dump" || die "$dump: unexpected events line: $(grep '^events:' "$dump")"
    ir=$(awk '/^totals:/ {print $2}' "$dump")
    summary=$(awk '/^summary:/ {print $2}' "$dump")
    [[ "$ir" =~ ^[0-9]+$ ]] && [ "$ir" -gt 0 ] || die "$dump: no totals line"
    # `summary:` (what callgrind_annotate reports) differs from `totals:` by a few thousand at most.
    if [ -n "$summary" ] && [ "$summary" != 0 ] &&
        awk -v a="$summary" -v b="$ir" 'BEGIN { exit !(a - b > b / 1000 || b - a > b / 1000) }'; then
        log "  note: $dump says summary $summary, totals $ir (more than 0.1% apart)"
    fi
    IR=$ir
}

log "temp dir $TMP; ${#CONFIGS[@]} configuration(s) x $ROUNDS round(s); $WARMUP warm-up + $REQUESTS" \
    "counted requests, $CONNS TLS keep-alive connections"
declare -A IRS # IRS[k] = the Ir of each round of CONFIGS[k], space-separated
run=0
for round in $(seq "$ROUNDS"); do
    for k in "${!CONFIGS[@]}"; do
        read -r idx prof <<<"${CONFIGS[$k]}"
        log "round $round: ${BINS[$idx]}${PROFILES:+, profile $prof} under callgrind"
        measure "$run" "${BINS[$idx]}" "$prof"
        IRS[$k]="${IRS[$k]:-}${IRS[$k]:+ }$IR"
        log "  Ir $IR"
        run=$((run + 1))
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "authgate instructions per proxied TLS request (callgrind Ir / $REQUESTS; h2load --h1 -t1 -c$CONNS" \
    "-n$REQUESTS after $WARMUP warm-up; JWT HS256; policy: ${POLICY:-none}; profiles: ${PROFILES:-header, no account}; $(valgrind --version); $(h2load --version | head -1);" \
    "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') of bench/)"
echo
# shellcheck disable=SC2086 # IRS[i] is a list of numbers, split on purpose
first=$(median ${IRS[0]})
for k in "${!CONFIGS[@]}"; do
    read -r idx prof <<<"${CONFIGS[$k]}"
    label="${BINS[$idx]}"
    [ "$prof" = - ] || label="$label, profile $prof"
    # shellcheck disable=SC2086
    awk -v ir="$(median ${IRS[$k]})" -v all="${IRS[$k]}" -v n="$REQUESTS" -v bin="$label" \
        -v first="$first" -v i="$k" -v rounds="$ROUNDS" 'BEGIN {
        line = sprintf("%s: Ir %.0f, instructions per request = %.0f", bin, ir, ir / n)
        if (rounds > 1) {
            k = split(all, v, " ")
            per = ""
            for (j = 1; j <= k; j++) per = per (j > 1 ? ", " : "") sprintf("%.0f", v[j] / n)
            line = line " (median; rounds: " per ")"
        }
        if (i > 0) line = line sprintf(", ratio to the first = %.4f (%+.2f%%)", ir / first, (ir / first - 1) * 100)
        print line
    }'
done
