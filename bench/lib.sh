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

# The ladder bench/turn.sh and bench/sip.sh climb for server $1: the rates of RATES in turn while
# each passes, then BISECT halvings of the gap between the last rate passed and the first failed
# (the highest rates, and their ratio, are then known to within the last gap, not the ladder's
# step). The script defines `probe SERVER RATE`, which sets VERDICT (pass, fail, or gen: the
# generator could not hold the rate); a pass is recorded here in MAX_RATE and MAX_SHOWN
# (associative arrays the script declares). A ladder ended by the generator, or passed to its
# top, leaves a lower bound (">=") in MAX_SHOWN.
rung() { # rung SERVER RATE: probe, and record a pass
    probe "$1" "$2"
    if [[ $VERDICT == pass ]]; then
        MAX_RATE[$1]=$2
        MAX_SHOWN[$1]=$2
    fi
}
climb() { # climb SERVER
    local s=$1 r failed=0 hi lo i
    MAX_RATE[$s]=0
    MAX_SHOWN[$s]=0
    VERDICT=pass
    for r in $RATES; do
        rung "$s" "$r"
        [[ $VERDICT == pass ]] || { failed=$r; break; }
    done
    if [[ $VERDICT == fail && ${MAX_RATE[$s]} -gt 0 ]]; then
        hi=$failed
        for ((i = 0; i < BISECT; i++)); do
            lo=${MAX_RATE[$s]}
            r=$(((lo + hi) / 2000 * 1000))
            ((r > lo && r < hi)) || break
            rung "$s" "$r"
            case $VERDICT in
            pass) ;;
            fail) hi=$r ;;
            gen) break ;;
            esac
        done
        [[ $VERDICT == pass ]] && VERDICT=fail # the ladder ended on a failure above
    fi
    case $VERDICT in
    gen)
        MAX_SHOWN[$s]=">=${MAX_RATE[$s]}"
        log "   the generator, not $s, was the limit above ${MAX_RATE[$s]}/s: that rate is a lower bound"
        ;;
    pass)
        MAX_SHOWN[$s]=">=${MAX_RATE[$s]}"
        log "   $s passed the top of the ladder: that rate is a lower bound"
        ;;
    esac
}
