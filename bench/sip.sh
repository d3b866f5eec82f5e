#!/usr/bin/env bash
# SIP registrar benchmark: Farside and Kamailio, one after the other in one run, each pinned to one
# CPU, with the same SIPp load pinned to another. Load (bench/sip/register-load.xml): phones behind
# a NAT (private Via and Contact) register with Digest: REGISTER, 401, REGISTER with credentials,
# 200; USERS users in turn. Kamailio runs bench/sip/kamailio-register.cfg: Debian's default
# registrar logic with WITH_NAT (force_rport, nat_uac_test("19"), fix_nated_register) and
# auth_challenge / pv_auth_check, locations in memory. Farside runs its embedded registrar (NAT
# tests, received/rport, flow binding, Digest with stateless nonces) with keep-alives off (as
# Kamailio's natping) and its store on disk (registrations written behind, as it always does).
#
# For each server and each rate of RATES registrations/s (STEP_SECS each, SIPp -r), it prints the
# failed registrations and the server's CPU time per registration (utime + stime of all its
# threads or processes from /proc), up to the highest rate with < FAIL_MAX % failed; then the
# ratios. Loopback only. Needs taskset, sipp, kamailio, cargo.
#
# Knobs: SERVERS="farside kamailio" SERVER_CPU=0 LOAD_CPU=1 USERS=200 STEP_SECS=5 FAIL_MAX=0.1
#        RATES="500 1000 2000 3000 4000 5000 6000 8000 10000" SKIP_BUILD=1 FARSIDE=path
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS=${SERVERS:-"farside kamailio"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
USERS=${USERS:-200}
STEP_SECS=${STEP_SECS:-5}
FAIL_MAX=${FAIL_MAX:-0.1}
RATES=${RATES:-"500 1000 2000 3000 4000 5000 6000 8000 10000"}
PASSWORD=bench-password # as in bench/sip/kamailio-register.cfg
CLK_TCK=$(getconf CLK_TCK)

NAME=sip.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need taskset sipp kamailio awk ss

free_port() { # a UDP port nobody listens on
    local p
    for p in $(seq 25060 2 25999); do
        ss -Huln "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
    die "no free port"
}

# The users, as SIPp's injection file: user; its credentials keyword; its private address's last byte.
{
    echo SEQUENTIAL
    for i in $(seq 0 $((USERS - 1))); do
        echo "user$i;[authentication username=user$i password=$PASSWORD];$((i % 250 + 2))"
    done
} >"$TMP/users.csv"

start_server() {
    local which=$1 port=$2
    case $which in
    farside)
        cat >"$TMP/farside.toml" <<TOML
[stun]
listen = ["127.0.0.1:$((port + 1))"]
tcp = false
workers = 1
[sip]
enabled = true
listen = ["udp:127.0.0.1:$port"]
domain = "example.org"
[sip.keepalive]
enabled = false
[store]
url = "sqlite://$TMP/farside.db"
[admin]
listen = "off"
[log]
level = "warn"
TOML
        log "   adding $USERS users to Farside's store"
        for i in $(seq 0 $((USERS - 1))); do
            "$FARSIDE" user add "user$i" --password "$PASSWORD" --realm example.org \
                --config "$TMP/farside.toml" >/dev/null
        done
        taskset -c "$SERVER_CPU" "$FARSIDE" serve --config "$TMP/farside.toml" >"$TMP/farside.log" 2>&1 &
        ;;
    kamailio)
        mkdir -p "$TMP/kamailio"
        taskset -c "$SERVER_CPU" kamailio -f "$ROOT/bench/sip/kamailio-register.cfg" -DD -E \
            -Y "$TMP/kamailio" -l "udp:127.0.0.1:$port" --alias=example.org -n 1 -m 256 -M 16 \
            >"$TMP/kamailio.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    sleep 2
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/$which.log" >&2; die "$which did not start"; }
}

ticks() { # CPU ticks of the server: its threads, and its child processes (Kamailio forks)
    local p total=0
    for p in $SERVER_PID $(pgrep -P "$SERVER_PID" || true); do
        [[ -r /proc/$p/stat ]] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}

load() { # rate secs -> "successful failed"
    local total=$(($1 * $2))
    taskset -c "$LOAD_CPU" sipp -sf "$ROOT/bench/sip/register-load.xml" -inf "$TMP/users.csv" \
        -set domain example.org -i 127.0.0.1 -p "$((PORT + 500))" -r "$1" -m "$total" \
        -l "$(($1 * 4))" -recv_timeout 4000 -timeout "$(($2 + 15))" -nostdin \
        "127.0.0.1:$PORT" >"$TMP/sipp.out" 2>&1 || true
    awk -F'|' '/Successful call/ { gsub(/ /, "", $3); s = $3 } /Failed call/ { gsub(/ /, "", $3); f = $3 }
        END { print s + 0, f + 0 }' "$TMP/sipp.out"
}

declare -A MAX_RATE STEP_US
for s in $SERVERS; do
    PORT=$(free_port)
    log "== $s on CPU $SERVER_CPU, SIPp on CPU $LOAD_CPU, port $PORT"
    start_server "$s" "$PORT"
    load 200 1 >/dev/null # warm-up
    MAX_RATE[$s]=0
    for r in $RATES; do
        t0=$(ticks)
        read -r ok failed < <(load "$r" "$STEP_SECS")
        t1=$(ticks)
        total=$((ok + failed))
        expected=$((r * STEP_SECS))
        read -r pct us < <(awk -v ok="$ok" -v f="$failed" -v e="$expected" -v t="$((t1 - t0))" -v hz="$CLK_TCK" \
            'BEGIN { bad = f + (e - ok - f); printf "%.3f %.1f\n", 100 * bad / e, (ok > 0) ? t / hz * 1e6 / ok : 0 }')
        log "   $r/s: $ok of $expected registered ($failed failed, $pct % not registered), CPU $((t1 - t0)) ticks, $us µs per registration"
        if awk -v p="$pct" -v m="$FAIL_MAX" 'BEGIN { exit !(p < m) }'; then
            MAX_RATE[$s]=$r
            STEP_US[$s,$r]=$us
        else
            break
        fi
    done
    stop_server
done

printf '\n%-10s %34s\n' server "max registrations/s (<${FAIL_MAX}% failed)"
for s in $SERVERS; do printf '%-10s %34s\n' "$s" "${MAX_RATE[$s]}"; done
if [[ -n ${MAX_RATE[farside]:-} && -n ${MAX_RATE[kamailio]:-} ]]; then
    printf '\n%-16s %18s %18s %30s\n' "registrations/s" "farside µs/reg" "kamailio µs/reg" "kamailio/farside (regs per CPU-s)"
    for r in $RATES; do
        f=${STEP_US[farside,$r]:-}; k=${STEP_US[kamailio,$r]:-}
        [[ -n $f && -n $k ]] || continue
        awk -v r="$r" -v f="$f" -v k="$k" 'BEGIN { printf "%-16s %18s %18s %30.2f\n", r, f, k, (f > 0) ? k / f : 0 }'
    done
    awk -v rf="${MAX_RATE[farside]}" -v rk="${MAX_RATE[kamailio]}" \
        'BEGIN { printf "\nfarside/kamailio max registration rate: %.2f (higher is better)\n", (rk > 0) ? rf / rk : 0 }'
fi
