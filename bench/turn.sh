#!/usr/bin/env bash
# TURN relay benchmark: Farside and coturn, one after the other in one run, each pinned to one CPU
# with the load generator (`farside bench turn`, which also runs the echo peers) pinned to another.
# Load: CLIENTS allocations over UDP with ephemeral credentials, one channel each, RTP-sized (172-byte)
# ChannelData round trips through the relay to an echo peer and back. For each server it prints:
#   - the server's CPU time per relayed message at FIXED_RATE round trips/s (utime + stime of all
#     its threads from /proc/PID/stat, over the run; two relayed messages per round trip),
#   - then, up a ladder of rates (RATES), the loss and the CPU per relayed message at each, up to the
#     highest rate with < LOSS_MAX % loss (then BISECT halvings of the gap between the last rate
#     passed and the first failed). Each step says where the lost messages were dropped: at
#     the generator's own sockets (it fell behind: the step is run again, up to GEN_RETRIES times;
#     if it stays so, the ladder ends and the highest rate is a lower bound, shown ">=") or at the
#     server's (the kernel's UDP receive-buffer errors less the generator's),
#   - the relayed messages per CPU-second at that highest rate, where the server's core is (nearly)
#     full: what one core relays at most without loss. (Offering more than a server takes measures
#     the generator too: its peers drop what they cannot echo.)
# and the ratios Farside/coturn: at FIXED_RATE, at each rate both passed, at each one's highest
# rate, and of the highest rates. A relayed message is one the relay delivered: each message the peer got, plus each
# echo the client got.
# Loopback only. Needs taskset, jq, turnserver (coturn), cargo.
#
# Knobs: SERVERS="farside coturn" SERVER_CPU=0 LOAD_CPU=1 CLIENTS=16 FIXED_RATE=20000 CPU_SECS=5
#        RATES="20000 40000 ... 300000" STEP_SECS=3 LOSS_MAX=0.1 GEN_RETRIES=2 BISECT=2
#        SKIP_BUILD=1 (use target/release/farside) FARSIDE=path
#        FARSIDE_SERVER=path (another farside binary as the server, e.g. an older build to compare
#        with; the load generator stays FARSIDE)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS=${SERVERS:-"farside coturn"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CLIENTS=${CLIENTS:-16}
FIXED_RATE=${FIXED_RATE:-20000}
CPU_SECS=${CPU_SECS:-5}
RATES=${RATES:-"20000 40000 60000 80000 100000 120000 140000 160000 180000 200000 250000 300000"}
STEP_SECS=${STEP_SECS:-3}
LOSS_MAX=${LOSS_MAX:-0.1}
GEN_RETRIES=${GEN_RETRIES:-2}
BISECT=${BISECT:-2}
SECRET="bench secret 0123456789abcdef"
CLK_TCK=$(getconf CLK_TCK)

NAME=turn.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need taskset jq awk

free_port() { # a UDP port nobody listens on, from a fixed high range
    local p
    for p in $(seq 23478 2 23999); do
        if ! ss -Huln "sport = :$p" | grep -q . && ! ss -Huln "sport = :$((p + 1))" | grep -q .; then
            echo "$p"; return
        fi
    done
    die "no free port"
}

start_server() {
    local which=$1 port=$2
    case $which in
    farside)
        cat >"$TMP/farside.toml" <<TOML
[stun]
listen = ["127.0.0.1:$port"]
tcp = false
workers = 1
[turn]
enabled = true
relay_ports = "42000-43999"
allowed_peers = ["127.0.0.0/8"]
auth_secrets = ["$SECRET"]
# Every client of the load comes from 127.0.0.1; the per-source budget of 401s (against forged
# sources) would ration them, as coturn's is off by default.
refusals_per_second = 0
[sip]
enabled = false
[rtp]
enabled = false
[store]
url = "sqlite://$TMP/farside.db"
[admin]
listen = "off"
[log]
level = "warn"
TOML
        taskset -c "$SERVER_CPU" "${FARSIDE_SERVER:-$FARSIDE}" serve --config "$TMP/farside.toml" >"$TMP/farside.log" 2>&1 &
        ;;
    coturn)
        taskset -c "$SERVER_CPU" turnserver -n --no-cli --no-tls --no-dtls --no-tcp \
            --listening-ip=127.0.0.1 --listening-port="$port" --relay-ip=127.0.0.1 \
            --min-port=44000 --max-port=45999 --use-auth-secret --static-auth-secret="$SECRET" \
            --realm=farside --allow-loopback-peers --total-quota=0 --user-quota=0 \
            --log-file=stdout --simple-log >"$TMP/coturn.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    sleep 1
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/$which.log" >&2; die "$which did not start"; }
}

ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }

# Datagrams the kernel dropped for a full receive buffer, on every UDP socket (RcvbufErrors): the
# machine-wide count, because a server's relay sockets close with their allocations, and their
# counts with them.
rcvbuf_errors() { awk '$1 == "Udp:" { if (seen) { print $6; exit } seen = 1 }' /proc/net/snmp; }

load() { # rate secs -> JSON line
    taskset -c "$LOAD_CPU" "$FARSIDE" bench turn "127.0.0.1:$PORT" --secret "$SECRET" \
        --clients "$CLIENTS" --rate "$1" --seconds "$2" --json
}

declare -A CPU_US MAX_RATE MAX_SHOWN STEP_US PER_CPU_S

# One rate for server $1: a step, run again while the generator was the limit; a pass raises
# the server's highest rate.
probe() { # probe SERVER RATE
    local try us
    for ((try = 0; try <= GEN_RETRIES; try++)); do
        step "$2"
        us=$(per_message "$STEP_TICKS" "$(relayed "$OUT")")
        log "   $2/s: $VERDICT, loss $(jq -r .loss_pct <<<"$OUT") % ($DROPS), CPU $STEP_TICKS ticks, $us µs per relayed message"
        [[ $VERDICT == gen ]] || break
    done
    if [[ $VERDICT == pass ]]; then
        STEP_US[$1,$2]=$us
    fi
}

# One step of the ladder: sets OUT (the generator's JSON), STEP_TICKS (the server's CPU) and
# VERDICT: "pass" (loss < LOSS_MAX), "gen" (the generator's own sockets dropped at least half
# of what was lost: it fell behind, so the step says nothing about the server) or "fail".
step() { # step RATE
    local t0 t1 e0 e1 gen lost srv
    e0=$(rcvbuf_errors)
    t0=$(ticks)
    OUT=$(load "$1" "$STEP_SECS")
    t1=$(ticks)
    e1=$(rcvbuf_errors)
    STEP_TICKS=$((t1 - t0))
    gen=$(jq -r '.generator_drops' <<<"$OUT")
    lost=$(jq -r '.sent - .received' <<<"$OUT")
    srv=$((e1 - e0 - gen))
    ((srv >= 0)) || srv=0
    if awk -v l="$(jq -r .loss_pct <<<"$OUT")" -v m="$LOSS_MAX" 'BEGIN { exit !(l < m) }'; then
        VERDICT=pass
    elif ((2 * gen >= lost)); then
        VERDICT=gen
    else
        VERDICT=fail
    fi
    # The rest was still queued when the generator stopped waiting (an overloaded server's
    # backlog) or dropped elsewhere (a send the kernel refused).
    DROPS="lost $lost: $gen at the generator's sockets, $srv at the server's, $((lost - gen - srv < 0 ? 0 : lost - gen - srv)) not back in time"
}
relayed() { jq -r '.peer_echoed + .received' <<<"$1"; } # load's JSON -> messages the relay delivered
per_message() { # ticks relayed -> CPU µs per relayed message
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", (n > 0) ? t / hz * 1e6 / n : 0 }'
}
for s in $SERVERS; do
    PORT=$(free_port)
    log "== $s on CPU $SERVER_CPU, load on CPU $LOAD_CPU, port $PORT"
    start_server "$s" "$PORT"
    load 5000 1 >/dev/null # warm-up: allocations, caches
    t0=$(ticks)
    out=$(load "$FIXED_RATE" "$CPU_SECS")
    t1=$(ticks)
    recv=$(jq -r .received <<<"$out")
    sent=$(jq -r .sent <<<"$out")
    CPU_US[$s]=$(per_message "$((t1 - t0))" "$(relayed "$out")")
    log "   $FIXED_RATE round trips/s: sent $sent, received $recv, CPU $((t1 - t0)) ticks: ${CPU_US[$s]} µs per relayed message"
    climb "$s"
    us=${STEP_US[$s,${MAX_RATE[$s]}]:-0}
    PER_CPU_S[$s]=$(awk -v us="$us" 'BEGIN { printf "%.0f", (us > 0) ? 1e6 / us : 0 }')
    stop_server
done

printf '\n%-10s %30s %26s %30s\n' server "CPU µs/relayed msg at $FIXED_RATE/s" "max round trips/s (<${LOSS_MAX}% loss)" "relayed msgs per CPU-s at max"
for s in $SERVERS; do printf '%-10s %30s %26s %30s\n' "$s" "${CPU_US[$s]}" "${MAX_SHOWN[$s]}" "${PER_CPU_S[$s]}"; done
if [[ -n ${CPU_US[farside]:-} && -n ${CPU_US[coturn]:-} ]]; then
    printf '\n%-12s %16s %16s %22s\n' "round trips/s" "farside µs/msg" "coturn µs/msg" "coturn/farside (msgs per CPU-s)"
    for r in $RATES; do
        f=${STEP_US[farside,$r]:-}; c=${STEP_US[coturn,$r]:-}
        [[ -n $f && -n $c ]] || continue
        awk -v r="$r" -v f="$f" -v c="$c" 'BEGIN { printf "%-12s %16s %16s %22.2f\n", r, f, c, (f > 0) ? c / f : 0 }'
    done
    # A lower bound for Farside's highest rate makes the ratio one; for coturn's, no bound at all.
    bound=""
    [[ ${MAX_SHOWN[farside]} == ">="* ]] && bound=">="
    [[ ${MAX_SHOWN[coturn]} == ">="* ]] && bound="unbounded, coturn's is a lower bound: "
    awk -v f="${CPU_US[farside]}" -v c="${CPU_US[coturn]}" -v rf="${MAX_RATE[farside]}" -v rc="${MAX_RATE[coturn]}" -v fr="$FIXED_RATE" \
        -v sf="${PER_CPU_S[farside]}" -v sc="${PER_CPU_S[coturn]}" -v b="$bound" \
        'BEGIN { printf "\nfarside/coturn (higher is better): relayed messages per CPU-second at %d/s %.2f, at each server at its max loss-free rate %.2f; max loss-free rate %s%.2f\n", fr, (f > 0) ? c / f : 0, (sc > 0) ? sf / sc : 0, b, (rc > 0) ? rf / rc : 0 }'
fi
