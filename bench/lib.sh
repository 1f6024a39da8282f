# bench/lib.sh: what bench/run.sh and bench/callgrind.sh share. Sourced, not run. The caller
# defines log() and die(), and sets TMP and PIDS before calling install_trap.

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
