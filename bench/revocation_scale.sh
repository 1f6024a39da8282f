#!/usr/bin/env bash
# bench/revocation_scale.sh: issue 15. What the periodic revocation sync costs as the store grows:
# start-up time, database rows and gateway CPU per idle sync, memory, and throughput and worst
# latency while syncs run, for N gated users and N live revoked JWT ids in PostgreSQL.
#
# Usage:
#   bench/revocation_scale.sh                          target/release/authgate
#   bench/revocation_scale.sh BINARY...                each binary in turn (e.g. old and new)
#   SIZES="0 100000" bench/revocation_scale.sh OLD     a quick look
#
# One private PostgreSQL (initdb in the temp dir, a free port on 127.0.0.1, trust auth, fsync off;
# run as the `postgres` user, or `nobody`, when the script runs as root, as tests/common/services.rs
# does) and one static nginx backend (bench/nginx-backend.conf) serve the whole run. For each binary
# and each size N:
#   1. a fresh database; the gateway starts once against it to run its migrations (/readyz 200),
#      and is stopped;
#   2. bulk load with generate_series: N users (token_epoch 1: their sessions were all ended once;
#      epoch_moved_at, where the schema has it, 30 days ago, longer than any token lives;
#      revocation_log, where it exists, left empty) and N live revoked JWT ids (expiring in a day;
#      jti = md5(i), 32 hex digits, the shape of the ids the gateway mints: UUIDs without dashes),
#      then VACUUM ANALYZE;
#   3. the gateway starts (TLS, HS256, log level warn, store.sync_interval = 1s): start to ready is
#      the time from spawn to admin /readyz 200;
#   4. SETTLE s idle, then over WINDOW s idle: rows the database read per sync, gateway CPU per sync,
#      RSS at the end;
#   5. LOAD s of wrk -t2 -c16 over TLS (HTTP/1.1 keep-alive), a valid bearer token for a user that
#      is not gated, while the syncs run: req/s, p99 and the longest request (wrk's Max).
# Then one table per binary, and per binary the memory each unit of N costs: (RSS at N - RSS at
# 0) / N bytes.
#
# Settings (environment):
#   SIZES="0 100000 1000000"   the N to measure (include 0: the relative req/s and bytes per unit use it)
#   SETTLE=10 WINDOW=10 LOAD=30   seconds: idle before the window, the idle window, wrk
#   CONNS=16 THREADS=2         wrk connections and threads
#   WORKERS=1                  TOKIO_WORKER_THREADS of the gateway (bench/run.sh's placement)
#   READY_TIMEOUT=300          seconds a gateway may take to answer /readyz 200
#   KEEP_TMP=1                 keep the temp dir (configs, logs, wrk output, postgres log)
#
# Placement (as bench/run.sh): the gateway alone on core 1; nginx, PostgreSQL and wrk on core 0.
# Loopback only. Installs postgresql, nginx, wrk, curl and openssl with apt-get when missing. Every
# process it starts is stopped on exit. Any non-2xx answer or socket error under load aborts the
# run: a gateway answering 401 quickly would be a bogus win. The binaries are not built here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
HELP="$BENCH/bench_helpers.py"
SIZES="${SIZES:-0 100000 1000000}"
SETTLE="${SETTLE:-10}"
WINDOW="${WINDOW:-10}"
LOAD="${LOAD:-30}"
CONNS="${CONNS:-16}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-1}"
READY_TIMEOUT="${READY_TIMEOUT:-300}"
SYNC_INTERVAL=1
# Not a real secret: the fixed HS256 key of bench/run.sh, used only on loopback.
JWT_SECRET="bench-only-hs256-secret-0123456789abcdef"
# Not a user in the store, so no gate applies to it; its jti is not among the revoked ones.
JWT_SUB="bench-user-42"
LOADGEN_CPU=0
PROXY_CPU=1

log() { printf '[revocation %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
for n in $SIZES; do [[ "$n" =~ ^(0|[1-9][0-9]*)$ ]] || die "SIZES: '$n' is not a non-negative integer"; done
for n in "$SETTLE" "$WINDOW" "$LOAD" "$CONNS" "$THREADS" "$WORKERS" "$READY_TIMEOUT"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "SETTLE, WINDOW, LOAD, CONNS, THREADS, WORKERS and READY_TIMEOUT must be positive integers"
done

# ---------------------------------------------------------------- tools, temp dir, cleanup
install_missing initdb:postgresql psql:postgresql-client nginx:nginx wrk:wrk curl:curl openssl:openssl \
    taskset:util-linux setpriv:util-linux python3:python3
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ "$(nproc)" -ge 2 ] || PROXY_CPU=0

# The PostgreSQL installation, found as tests/common/services.rs finds it: initdb on PATH, else
# the newest /usr/lib/postgresql/<version>/bin.
PGBIN=""
if command -v initdb >/dev/null; then
    PGBIN="$(dirname "$(readlink -f "$(command -v initdb)")")"
    [ -x "$PGBIN/postgres" ] || PGBIN=""
fi
if [ -z "$PGBIN" ]; then
    PGBIN="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1)"
fi
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/postgres" ] || die "no PostgreSQL (initdb + postgres) found"

TMP="$(mktemp -d /tmp/authgate-revocation.XXXXXX)"
chmod 755 "$TMP" # nginx workers and the postgres user read below it
mkdir -p "$TMP/logs" "$TMP/raw" "$TMP/nginx-tmp" "$TMP/pg"
cd "$TMP" # a working directory the postgres user can enter
PIDS=()
install_trap
PG_PID=""
# PostgreSQL gets INT first (fast shutdown: its sessions are ended), then everything the usual way.
cleanup() {
    local rc=$?
    set +e
    [ -z "$PG_PID" ] || kill -INT "$PG_PID" 2>/dev/null
    (exit "$rc") # bench_cleanup reads the run's status from $?
    bench_cleanup
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: as root, initdb and the postmaster run as `postgres` (or
# `nobody`) through setpriv, which execs, so the pid we hold is the postmaster itself.
AS_PG=()
if [ "$(id -u)" = 0 ]; then
    PG_USER_OS=postgres
    id "$PG_USER_OS" >/dev/null 2>&1 || PG_USER_OS=nobody
    AS_PG=(setpriv --reuid="$PG_USER_OS" --regid="$(id -g "$PG_USER_OS")" --clear-groups)
    chown "$PG_USER_OS:" "$TMP/pg"
fi

free_ports() { python3 "$HELP" ports "$1"; }

# ---------------------------------------------------------------- keys, tokens
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
chmod 600 "$TMP/key.pem"

jwt() { # jwt SUB JTI: an HS256 JWT {sub, exp = now + 1 h, iat, jti} signed with JWT_SECRET
    python3 - "$JWT_SECRET" "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, sub, jti = sys.argv[1:]
b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
now = int(time.time())
enc = lambda o: b64(json.dumps(o, separators=(",", ":")).encode())
head, body = enc({"alg": "HS256", "typ": "JWT"}), enc({"sub": sub, "exp": now + 3600, "iat": now, "jti": jti})
sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
PY
}
JWT="$(jwt "$JWT_SUB" "bench-load-$$")"
# A token whose jti is the first bulk-loaded revoked one: must be refused wherever N > 0.
REVOKED_JWT="$(jwt "$JWT_SUB" "$(printf 1 | md5sum | cut -d' ' -f1)")"

# ---------------------------------------------------------------- PostgreSQL and the backend
PG_PORT=""
PG_PRELOAD=""
# pg_stat_statements, where installed, counts the syncs the gateway actually ran in a window (a
# sync that takes longer than the interval delays the next one).
if [ -e "$PGBIN/../lib/pg_stat_statements.so" ]; then PG_PRELOAD=pg_stat_statements; fi
waited "$TMP/logs/initdb.log" "${AS_PG[@]}" env LC_ALL=C "$PGBIN/initdb" -D "$TMP/pg/data" -U authgate \
    --auth=trust --no-sync --locale=C --encoding=UTF8 || { cat "$TMP/logs/initdb.log" >&2; die "initdb failed"; }
q() { # q SQL [DB]: one statement through psql over TCP, unaligned output
    PGCONNECT_TIMEOUT=5 psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U authgate \
        -d "${2:-postgres}" -c "$1"
}
for attempt in 1 2 3; do
    PG_PORT=$(free_ports 1)
    start postgres "$LOADGEN_CPU" "${AS_PG[@]}" env LC_ALL=C "$PGBIN/postgres" -D "$TMP/pg/data" -p "$PG_PORT" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections=100 ${PG_PRELOAD:+-c shared_preload_libraries=$PG_PRELOAD}
    PG_PID=$STARTED
    for i in $(seq 600); do
        q 'SELECT 1' >/dev/null 2>&1 && break 2
        kill -0 "$PG_PID" 2>/dev/null || break
        sleep 0.05
    done
    stop "$PG_PID"
    PG_PID=""
    grep -q 'could not bind\|Address already in use' "$TMP/logs/postgres.log" ||
        { cat "$TMP/logs/postgres.log" >&2; die "postgres did not start"; }
done
[ -n "$PG_PID" ] || die "postgres: no free port after 3 attempts"
if [ -n "$PG_PRELOAD" ]; then
    q 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null
fi
log "temp dir $TMP; PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" \
    "(pid $PG_PID${PG_PRELOAD:+, pg_stat_statements})"

mapfile -t P < <(free_ports 2)
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

# ---------------------------------------------------------------- the gateway
# gateway_config OUT DB: a config on fresh ports for database DB; sets PORT and ADMIN
gateway_config() {
    local p
    mapfile -t p < <(free_ports 2)
    PORT=${p[0]} ADMIN=${p[1]}
    cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$PORT"
shutdown_grace = "2s"

[admin]
listen = "127.0.0.1:$ADMIN"

[tls]
cert = "$TMP/cert.pem"
key = "$TMP/key.pem"

[upstream]
url = "http://127.0.0.1:$BACKEND_PORT"

[jwt]
algorithm = "HS256"
secret = "$JWT_SECRET"

[store]
url = "postgres://authgate@127.0.0.1:$PG_PORT/$2"
sync_interval = "${SYNC_INTERVAL}s"

[log]
level = "warn"
EOF
}

# gateway_start NAME BINARY CONFIG: spawn, wait for admin /readyz 200; sets GW_PID and READY_S
# (seconds from spawn to the first 200)
gateway_start() {
    local name=$1 t0 code
    t0=$(date +%s%N)
    # RUST_LOG and JWT_SECRET_KEY would override the config's log level and secret.
    start "$name" "$PROXY_CPU" env -u RUST_LOG -u JWT_SECRET_KEY TOKIO_WORKER_THREADS="$WORKERS" \
        "$2" --config "$3"
    GW_PID=$STARTED
    while :; do
        code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz" || true)
        [ "$code" = 200 ] && break
        kill -0 "$GW_PID" 2>/dev/null || { tail -30 "$TMP/logs/$name.log" >&2; die "$name exited at start"; }
        [ $(($(date +%s%N) - t0)) -lt $((READY_TIMEOUT * 1000000000)) ] ||
            { tail -30 "$TMP/logs/$name.log" >&2; die "$name: /readyz not 200 after $READY_TIMEOUT s"; }
        sleep 0.02
    done
    READY_S=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }')
}

# ---------------------------------------------------------------- bulk load
# The columns of TABLE: "name|data_type|nullable|has a default" a line
columns() {
    q "SELECT column_name, data_type, is_nullable, (column_default IS NOT NULL)
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '$1'
       ORDER BY ordinal_position" "$DB"
}
has_table() { [ "$(q "SELECT to_regclass('public.$1') IS NOT NULL" "$DB")" = t ]; }

# fill TABLE KNOWN...: SQL column list and value list for INSERT ... SELECT ... FROM
# generate_series(1, N) i. KNOWN are "column=expression" pairs; a NOT NULL column without a default
# that is not known gets a value by its type (unix seconds WHEN for a *_at BIGINT); dies on a type
# it cannot fill. Sets COLS, VALS, EXTRA (the columns filled by type).
fill() {
    local table=$1 when=$2 name type nullable has_default kv expr
    shift 2
    declare -A known=()
    for kv in "$@"; do known[${kv%%=*}]=${kv#*=}; done
    COLS="" VALS="" EXTRA=""
    while IFS='|' read -r name type nullable has_default; do
        [ -n "$name" ] || continue
        type=${type%% *} # "timestamp with time zone" -> "timestamp"; "bigint" stays
        if [ -n "${known[$name]+x}" ]; then
            expr=${known[$name]}
        elif [ "$nullable" = YES ] || [ "$has_default" = t ]; then
            continue
        else
            case "$name:$type" in
                *_at:bigint | *_at:integer) expr="$when" ;;
                *_at:timestamp*) expr="to_timestamp($when)" ;;
                *:text | *:character*) expr="'$name-' || i" ;;
                *:bigint | *:integer | *:smallint) expr=0 ;;
                *:boolean) expr=false ;;
                *) die "$table.$name ($type, NOT NULL, no default): no rule to fill it" ;;
            esac
            EXTRA+=" $name"
        fi
        COLS+="${COLS:+, }$name"
        VALS+="${VALS:+, }$expr"
    done < <(columns "$table")
}

# bulk_load N: N gated users and N live revoked JWT ids into DB; sets SCHEMA (old | new)
bulk_load() {
    local n=$1 now day=86400 moved type
    now=$(date +%s)
    SCHEMA=old
    moved=""
    type=$(q "SELECT data_type FROM information_schema.columns WHERE table_schema = 'public'
              AND table_name = 'users' AND column_name = 'epoch_moved_at'" "$DB")
    if [ -n "$type" ]; then
        SCHEMA=new
        case "$type" in
            bigint | integer) moved="epoch_moved_at=$((now - 30 * day))" ;;
            timestamp*) moved="epoch_moved_at=to_timestamp($((now - 30 * day)))" ;;
            *) die "users.epoch_moved_at has type $type: no rule to fill it" ;;
        esac
    fi
    if has_table revocation_log && [ "$(q 'SELECT count(*) FROM revocation_log' "$DB")" != 0 ]; then
        q 'DELETE FROM revocation_log' "$DB" >/dev/null # left empty: nothing moved recently
    fi
    [ "$n" = 0 ] && return 0
    # The skeleton_* look-alike keys are set (to the name itself) so that no binary backfills N
    # rows at start-up; any non-NULL value does, as nothing here registers a name.
    fill users "$((now - 60 * day))" "id='bench-u-' || i" "username='user' || i" "username_norm='user' || i" \
        "email='user' || i || '@bench.invalid'" \
        "password_hash='\$argon2id\$v=19\$m=19456,t=2,p=1\$YmVuY2gtc2FsdA\$bm90LWEtcmVhbC1oYXNoLWJlbmNoLW9ubHk'" \
        "created_at=$((now - 60 * day))" "disabled=0" "token_epoch=1" \
        "skeleton_norm='user' || i" "skeleton_given='user' || i" ${moved:+"$moved"}
    [ -z "$EXTRA" ] || log "  users: filled by type:$EXTRA"
    q "INSERT INTO users ($COLS) SELECT $VALS FROM generate_series(1, $n) AS i" "$DB" >/dev/null
    fill revoked_tokens "$((now - 3600))" "jti=md5(i::text)" "user_id='bench-u-' || i" \
        "expires_at=$((now + day))"
    [ -z "$EXTRA" ] || log "  revoked_tokens: filled by type:$EXTRA"
    q "INSERT INTO revoked_tokens ($COLS) SELECT $VALS FROM generate_series(1, $n) AS i" "$DB" >/dev/null
    # VACUUM as well as ANALYZE: hint bits and the visibility map set now, not by the first sync.
    q 'VACUUM ANALYZE' "$DB" >/dev/null
}

# ---------------------------------------------------------------- measurements
# Rows the server touched in DB: tup_returned (rows read by sequential and index scans) +
# tup_fetched (rows fetched by index scans), as pg_stat_database counts them. That is every row
# the server looked at, not only the rows sent to the gateway, and it includes catalog rows. The
# counters are flushed by each backend about once a second, so a window's edges are blurred by
# about one sync.
db_rows() { q "SELECT tup_returned + tup_fetched FROM pg_stat_database WHERE datname = '$DB'"; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; } # utime + stime
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
writes() { # rows written to users and revoked_tokens so far (a gateway should write none at start)
    q "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables
       WHERE relname IN ('users', 'revoked_tokens')" "$DB"
}
# The syncs run in the window: the calls of the gateway's most frequent SELECT on the revocation
# state (pg_stat_statements, reset at the window's start); WINDOW / interval without it.
syncs_reset() { [ -z "$PG_PRELOAD" ] || q "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = '$DB'), 0)" >/dev/null; }
syncs_seen() {
    [ -n "$PG_PRELOAD" ] || { echo "$((WINDOW / SYNC_INTERVAL)) 0"; return 0; }
    q "SELECT coalesce(max(calls) FILTER (WHERE query ~* '^\\s*select' AND query ~* '(revoked_tokens|revocation_log|users)'), 0),
              coalesce(sum(total_exec_time), 0)
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$DB')" | tr '|' ' '
}
to_ms() { # wrk's "12.34ms" / "567.00us" / "1.20s" / "2.00m" -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0) exit 1; printf "%.3f", n * f }'
}

TICK=$(getconf CLK_TCK)
declare -A R # R[bin,n,field]
DBSEQ=0

# measure BIN_INDEX N
measure() {
    local bi=$1 n=$2 bin=${BINS[$1]} name dir body code rows0 rows1 cpu0 cpu1 w0 w1 syncs dbms out parsed
    local rps p50 p99 bad errs max
    DBSEQ=$((DBSEQ + 1))
    DB="bench_${DBSEQ}"
    dir="$TMP/run-$bi-$n"
    mkdir -p "$dir"
    q "CREATE DATABASE $DB" >/dev/null

    name="migrate-$bi-$n"
    gateway_config "$dir/gateway.toml" "$DB"
    gateway_start "$name" "$bin" "$dir/gateway.toml"
    stop "$GW_PID"
    log "  $DB migrated ($(q 'SELECT max(version) FROM authgate_schema' "$DB" 2>/dev/null || echo '?'));" \
        "loading $n users and $n revoked JWT ids"
    local t0=$SECONDS
    bulk_load "$n"
    log "  loaded in $((SECONDS - t0)) s (schema: $SCHEMA); $(q "SELECT pg_size_pretty(pg_database_size('$DB'))") on disk"

    name="gw-$bi-$n"
    gateway_config "$dir/gateway.toml" "$DB"
    w0=$(writes)
    gateway_start "$name" "$bin" "$dir/gateway.toml"
    local pid=$GW_PID
    log "  ready in $READY_S s"
    body=$(curl -sk --http1.1 -H "Authorization: Bearer $JWT" "https://localhost:$PORT/")
    [ "$body" = "ok $JWT_SUB" ] || die "the load token answered '$body', expected 'ok $JWT_SUB'"
    code=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' "https://localhost:$PORT/")
    [ "$code" = 401 ] || die "no token answered $code, expected 401"
    if [ "$n" -gt 0 ]; then
        code=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REVOKED_JWT" \
            "https://localhost:$PORT/")
        [ "$code" = 401 ] || die "a token with a bulk-loaded revoked jti answered $code, expected 401"
    fi

    sleep "$SETTLE"
    syncs_reset
    rows0=$(db_rows)
    cpu0=$(cpu_ticks "$pid")
    sleep "$WINDOW"
    cpu1=$(cpu_ticks "$pid")
    rows1=$(db_rows)
    read -r syncs dbms <<<"$(syncs_seen)"
    R[$bi,$n,rss]=$(rss_kib "$pid")
    w1=$(writes)
    [ "$w1" = "$w0" ] || log "  note: the gateway wrote $((w1 - w0)) rows to users/revoked_tokens after its start"
    R[$bi,$n,syncs]=$syncs
    local div=$syncs
    [ "$div" -gt 0 ] || div=1
    R[$bi,$n,rows]=$(awk -v d=$((rows1 - rows0)) -v s="$div" 'BEGIN { printf "%.0f", d / s }')
    R[$bi,$n,cpu]=$(awk -v d=$((cpu1 - cpu0)) -v s="$div" -v t="$TICK" 'BEGIN { printf "%.1f", d * 1000 / t / s }')
    R[$bi,$n,dbms]=$(awk -v d="$dbms" -v s="$div" 'BEGIN { printf "%.1f", d / s }')
    R[$bi,$n,ready]=$READY_S
    log "  idle ${WINDOW} s: $syncs syncs, ${R[$bi,$n,rows]} rows/sync, ${R[$bi,$n,cpu]} ms CPU/sync," \
        "${R[$bi,$n,dbms]} ms in the database/sync, RSS $((${R[$bi,$n,rss]} / 1024)) MiB"

    out="$TMP/raw/wrk-$bi-$n.txt"
    # wrk gives up on a request after --timeout and counts a socket error: 60 s, so that a request held
    # up by a long sync shows as a long Max rather than ending the run.
    waited "$out" timeout $((LOAD + 120)) taskset -c "$LOADGEN_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${LOAD}s" --timeout 60s \
        --latency -H "Authorization: Bearer $JWT" "https://localhost:$PORT/" || { cat "$out" >&2; die "wrk failed"; }
    parsed=$(python3 "$HELP" wrk "$out") || { cat "$out" >&2; die "cannot parse wrk output"; }
    read -r rps p50 p99 bad errs <<<"$parsed"
    [ "$bad" = 0 ] || { cat "$out" >&2; die "N=$n: $bad non-2xx answers under load"; }
    [ "$errs" = 0 ] || { cat "$out" >&2; die "N=$n: $errs socket errors under load"; }
    max=$(awk '$1 == "Latency" { print $4; exit }' "$out")
    max=$(to_ms "$max") || { cat "$out" >&2; die "cannot read wrk's Max latency"; }
    kill -0 "$pid" 2>/dev/null || die "the gateway died under load"
    R[$bi,$n,rps]=$rps R[$bi,$n,p99]=$p99 R[$bi,$n,max]=$max
    R[$bi,$n,warn]=$(grep -c 'WARN\|ERROR' "$TMP/logs/$name.log" || true)
    log "  load ${LOAD} s: $rps req/s, p99 $p99 ms, max $max ms; ${R[$bi,$n,warn]} warning/error lines in its log"
    # The distinct messages, without their timestamps: what went wrong, if anything.
    [ "${R[$bi,$n,warn]}" = 0 ] || grep 'WARN\|ERROR' "$TMP/logs/$name.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c |
        sort -rn | head -5 | while read -r line; do log "    $line"; done
    R[$bi,schema]=$SCHEMA
    stop "$pid"
    q "DROP DATABASE $DB" >/dev/null
}

log "${#BINS[@]} binary(ies) x sizes $SIZES; settle $SETTLE s, idle window $WINDOW s, wrk -t$THREADS" \
    "-c$CONNS ${LOAD} s; sync interval ${SYNC_INTERVAL} s; gateway on core $PROXY_CPU ($WORKERS worker)"
for bi in "${!BINS[@]}"; do
    for n in $SIZES; do
        log "${BINS[$bi]}: N = $n"
        measure "$bi" "$n"
    done
done

# ---------------------------------------------------------------- report
echo
echo "## authgate revocation sync vs store size (issue 15), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)." \
    "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync off), nginx backend, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)," \
    "on core $LOADGEN_CPU; the gateway on core $PROXY_CPU, TOKIO_WORKER_THREADS=$WORKERS; store.sync_interval = ${SYNC_INTERVAL}s."
echo "N users with token_epoch 1 (epoch_moved_at 30 days ago where the schema has it) + N live revoked JWT ids."
echo "Idle: ${SETTLE} s, then a ${WINDOW} s window; rows/sync = pg_stat_database tup_returned + tup_fetched (every row the"
echo "server touched) / syncs; syncs = $([ -n "$PG_PRELOAD" ] && echo "counted with pg_stat_statements" || echo "window / interval");" \
    "CPU = gateway utime + stime. Load: wrk -t$THREADS -c$CONNS -d${LOAD}s, TLS, HTTP/1.1 keep-alive, a valid HS256 token."
for bi in "${!BINS[@]}"; do
    echo
    echo "### ${BINS[$bi]} ($("${BINS[$bi]}" --version 2>/dev/null | head -1 || echo '?'); schema: ${R[$bi,schema]:-?})"
    echo
    echo "| N | start to ready s | syncs in ${WINDOW} s | rows/sync | CPU ms/sync | DB ms/sync | RSS MiB | req/s | req/s vs N=0 | max latency ms | p99 ms |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $SIZES; do
        awk -v n="$n" -v ready="${R[$bi,$n,ready]}" -v syncs="${R[$bi,$n,syncs]}" -v rows="${R[$bi,$n,rows]}" \
            -v cpu="${R[$bi,$n,cpu]}" -v dbms="${R[$bi,$n,dbms]}" -v rss="${R[$bi,$n,rss]}" -v rps="${R[$bi,$n,rps]}" \
            -v base="${R[$bi,0,rps]:-}" -v max="${R[$bi,$n,max]}" -v p99="${R[$bi,$n,p99]}" 'BEGIN {
            rel = (base != "" && base > 0) ? sprintf("%.3f", rps / base) : "n/a"
            printf "| %d | %s | %s | %s | %s | %s | %.1f | %.0f | %s | %.1f | %.2f |\n",
                n, ready, syncs, rows, cpu, dbms, rss / 1024, rps, rel, max, p99 }'
    done
    echo
    if [ -n "${R[$bi,0,rss]:-}" ]; then
        what="one gated user + one revoked JWT id (users and revocations, both held)"
        [ "${R[$bi,schema]:-old}" = new ] && what="one revoked JWT id + one user whose epoch moved 30 days ago"
        line=""
        for n in $SIZES; do
            [ "$n" -gt 0 ] || continue
            line+="${line:+; }N=$n: $(awk -v a="${R[$bi,$n,rss]}" -v b="${R[$bi,0,rss]}" -v n="$n" \
                'BEGIN { printf "%.0f", (a - b) * 1024 / n }') bytes"
        done
        [ -z "$line" ] || echo "Bytes per unit of N, (RSS at N - RSS at 0) / N, a unit being $what: $line."
    fi
    warns=""
    for n in $SIZES; do [ "${R[$bi,$n,warn]:-0}" = 0 ] || warns+=" N=$n: ${R[$bi,$n,warn]}"; done
    [ -z "$warns" ] || echo "Warning/error lines in the gateway's log:$warns (kept with KEEP_TMP=1)."
done
