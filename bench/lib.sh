# bench/lib.sh: what bench/run.sh, bench/callgrind.sh and bench/revocation_scale.sh share. Sourced,
# not run. The caller defines log() and die(), and sets TMP and PIDS before calling install_trap;
# start() writes to $TMP/logs.

# install_missing CMD:PACKAGE... — apt-get install the packages whose command is missing (a command
# found only under /usr/sbin counts as present).
install_missing() {
    local pair need=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
    done
    [ "${#need[@]}" -gt 0 ] || return 0
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null; } ||
        die "apt-get install ${need[*]} failed"
}

# On exit: every process in PIDS gets TERM, then KILL after up to 10 s; TMP is removed unless
# KEEP_TMP=1 or the run failed.
bench_cleanup() {
    local rc=$? pid i alive
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 100); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}

install_trap() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# render TEMPLATE OUT NAME=VALUE...: replace each @NAME@ placeholder (values may span lines).
render() {
    local text kv out
    text="$(<"$1")"
    out="$2"
    shift 2
    for kv in "$@"; do text="${text//@${kv%%=*}@/${kv#*=}}"; done
    [[ "$text" != *@[A-Z_]*@* ]] || die "unfilled placeholder in $out"
    printf '%s\n' "$text" >"$out"
}

start() { # start NAME CPU CMD...: in the background, output to logs/NAME.log; sets STARTED
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$TMP/logs/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}
stop() { # stop PID: TERM, then KILL after 10 s
    local i
    kill -TERM "$1" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}
forget() { # forget PID: no longer one for cleanup to stop
    local i
    for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$1" ] && unset 'PIDS[i]'; done
    return 0
}

# waited LOG CMD...: CMD in the background, output to LOG, its status; a TERM or INT meanwhile stops
# the run at once (bash runs traps only between foreground commands, but during `wait`).
waited() {
    local out=$1 pid rc=0
    shift
    "$@" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}
