# Shared by the bench/*.sh scripts (sourced, not run): messages, the farside binary, a scratch
# directory, and stopping the server under test. The script sets ROOT and NAME first.
# FARSIDE=path uses that binary; SKIP_BUILD=1 uses target/release/farside as it is.

log() { printf '%s\n' "$*" >&2; }
die() { log "$NAME: $*"; exit 1; }
need() { # tools the script runs
    local tool
    for tool; do command -v "$tool" >/dev/null || die "needs $tool"; done
}

if [[ -n ${FARSIDE:-} ]]; then SKIP_BUILD=1; else FARSIDE="${CARGO_TARGET_DIR:-$ROOT/target}/release/farside"; fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building: cargo build --release -p farside"
    (cd "$ROOT" && cargo build --release -p farside) >&2
fi
[[ -x $FARSIDE ]] || die "no farside binary at $FARSIDE"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/farside-$NAME.XXXXXX")
SERVER_PID=""
stop_server() { # TERM, up to 5 s, then KILL
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT
