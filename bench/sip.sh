#!/usr/bin/env bash
# SIP registrar benchmark: Farside and Kamailio, one after the other in one run, each pinned to one
# CPU, with the same load pinned to another. Load: phones behind a NAT (private Via and Contact)
# register with Digest: REGISTER, 401, REGISTER with credentials, 200; USERS users in turn.
# Kamailio runs bench/sip/kamailio-register.cfg: Debian's default registrar logic with WITH_NAT
# (force_rport, nat_uac_test("19"), fix_nated_register) and auth_challenge / pv_auth_check,
# locations in memory. Farside runs its embedded registrar (NAT tests, received/rport, flow
# binding, Digest with stateless nonces) with keep-alives off (as Kamailio's natping) and its
# store on disk (registrations written behind, as it always does).
#
# The load generator (LOAD):
#   farside  `farside bench sip` (default): open loop, batched, no retransmissions (a datagram
#            lost is a registration failed), one core drives it past 100 000 registrations/s.
#   sipp     SIPp with bench/sip/register-load.xml, the same messages, one request per system
#            call; it saturates its own core near 28 000 registrations/s on this kind of machine,
#            below Farside's ceiling, so its ladder cannot find that. A third-party check of the
#            figures at the rates it reaches.
#
# ROUNDS times (default 3), the servers' order turned round each time: this VM's cost of the
# same work drifts by 10-20 % within minutes (the same build measured 31-43 µs per
# registration at 2,000/s in one session), so one pass of each can put the drift into the
# ratio. Figures are each rate's median over the rounds that passed it; each round's ratio is
# shown too.
#
# For each server, up a ladder of rates (RATES registrations/s, STEP_SECS each): the failed
# registrations and the server's CPU time per registration (on-CPU nanoseconds of all its
# threads, and of its child processes for Kamailio, from /proc/*/task/*/schedstat), up to the
# highest rate with < FAIL_MAX % failed; then BISECT halvings of the gap between the last rate
# passed and the first failed. A step the generator could not hold (it fell behind its schedule
# or its own sockets dropped answers) is run again, up to GEN_RETRIES times; if it stays so the
# ladder ends there and the highest rate is a lower bound (">="). Then the ratios at each rate
# both passed. Loopback only. Needs taskset, jq, kamailio (sipp for LOAD=sipp), cargo.
#
# The store: "farside" keeps it in SQLite; "farside-pg" is the same on PostgreSQL (the server
# FARSIDE_TEST_POSTGRES names, as scripts/start-postgres prints it; a database farside_bench is
# made afresh). WRITE_BEHIND (sip.write_behind, default 10s) 0 puts the store on every REGISTER's
# path (its 200 waits for the write), which is where the backends differ.
#
# Knobs: SERVERS="farside kamailio" (or "farside farside-pg kamailio") WRITE_BEHIND=10s
#        SERVER_CPU=0 LOAD_CPU=1 USERS=200 STEP_SECS=5 FAIL_MAX=0.1
#        RATES="2000 4000 ... 160000" BISECT=2 GEN_RETRIES=2 LOAD=farside|sipp ROUNDS=3
#        SKIP_BUILD=1 FARSIDE=path FARSIDE_SERVER=path (another farside binary as the server)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS=${SERVERS:-"farside kamailio"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
USERS=${USERS:-200}
STEP_SECS=${STEP_SECS:-5}
FAIL_MAX=${FAIL_MAX:-0.1}
LOAD=${LOAD:-farside}
RATES=${RATES:-"2000 4000 6000 8000 10000 15000 20000 25000 30000 40000 50000 60000 70000 80000 90000 100000 120000 140000 160000"}
BISECT=${BISECT:-2}
WRITE_BEHIND=${WRITE_BEHIND:-10s}
GEN_RETRIES=${GEN_RETRIES:-2}
ROUNDS=${ROUNDS:-3}
PASSWORD=bench-password # as in bench/sip/kamailio-register.cfg

NAME=sip.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need taskset kamailio awk ss jq
[[ $LOAD == sipp ]] && need sipp

free_port() { # a UDP port nobody listens on
    local p
    for p in $(seq 25060 2 25999); do
        ss -Huln "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
    die "no free port"
}

# The users, as SIPp's injection file: user; its credentials keyword; its private address's last
# byte (`farside bench sip` derives the same from --users).
{
    echo SEQUENTIAL
    for i in $(seq 0 $((USERS - 1))); do
        echo "user$i;[authentication username=user$i password=$PASSWORD];$((i % 250 + 2))"
    done
} >"$TMP/users.csv"

start_server() {
    local which=$1 port=$2
    case $which in
    farside | farside-pg)
        local url="sqlite://$TMP/farside.db"
        rm -f "$TMP"/farside.db* # each round starts from an empty store, as Kamailio's does
        if [[ $which == farside-pg ]]; then
            [[ -n ${FARSIDE_TEST_POSTGRES:-} ]] || die "farside-pg needs FARSIDE_TEST_POSTGRES (scripts/start-postgres)"
            psql -q "$FARSIDE_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS farside_bench WITH (FORCE)" \
                -c "CREATE DATABASE farside_bench" >/dev/null
            url="${FARSIDE_TEST_POSTGRES%/*}/farside_bench"
        fi
        cat >"$TMP/farside.toml" <<TOML
[stun]
listen = ["127.0.0.1:$((port + 1))"]
tcp = false
workers = 1
[sip]
enabled = true
listen = ["udp:127.0.0.1:$port"]
domain = "example.org"
# Every phone of the load comes from 127.0.0.1; the per-source budget of 401s (against forged
# sources) would ration them. Kamailio has no such budget either.
refusals_per_second = 0
write_behind = "$WRITE_BEHIND"
[sip.keepalive]
enabled = false
[turn]
enabled = false
[rtp]
enabled = false
[store]
url = "$url"
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
        taskset -c "$SERVER_CPU" "${FARSIDE_SERVER:-$FARSIDE}" serve --config "$TMP/farside.toml" \
            >"$TMP/$which.log" 2>&1 &
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

cpu_ns() { # on-CPU nanoseconds of the server and the times it was put on a CPU (its wake-ups,
    # less the rare preemption): its threads, its child processes' (Kamailio forks), and
    # PostgreSQL's processes when it is farside-pg's store (not pinned: it runs where it can)
    local p t total=0 runs=0 store="" ns n
    [[ ${s:-} == farside-pg ]] && store=$(pgrep -x postgres || true)
    for p in $SERVER_PID $(pgrep -P "$SERVER_PID" || true) $store; do
        for t in /proc/"$p"/task/*/schedstat; do
            [[ -r $t ]] && read -r ns _ n <"$t" && total=$((total + ns)) && runs=$((runs + n))
        done
    done
    echo "$total $runs"
}

# One load step; prints one JSON object: started, registered, failed_pct, kept_up,
# generator_drops (what the verdict needs), whichever generator ran.
load() { # rate secs
    case $LOAD in
    farside)
        taskset -c "$LOAD_CPU" "$FARSIDE" bench sip "127.0.0.1:$PORT" --rate "$1" --duration "$2" \
            --users "$USERS" --password "$PASSWORD" --domain example.org --json
        ;;
    sipp)
        local total=$(($1 * $2)) t0 t1
        t0=$(date +%s.%N)
        taskset -c "$LOAD_CPU" sipp -sf "$ROOT/bench/sip/register-load.xml" -inf "$TMP/users.csv" \
            -set domain example.org -i 127.0.0.1 -p "$((PORT + 500))" -r "$1" -m "$total" \
            -l "$(($1 * 4))" -recv_timeout 4000 -timeout "$(($2 + 15))" -nostdin \
            "127.0.0.1:$PORT" >"$TMP/sipp.out" 2>&1 || true
        t1=$(date +%s.%N)
        # SIPp starts calls as fast as it can when behind: it kept up if the calls took no
        # more than 5 % longer than planned (the last answers come within a round trip).
        awk -F'|' -v e="$total" -v secs="$2" -v t0="$t0" -v t1="$t1" '
            /Successful call/ { gsub(/ /, "", $3); s = $3 } /Failed call/ { gsub(/ /, "", $3); f = $3 }
            END { printf "{\"started\":%d,\"registered\":%d,\"failed_pct\":%.4f,\"kept_up\":%s,\"generator_drops\":0}\n",
                  e, s, 100 * (e - s) / e, (t1 - t0 <= secs * 1.05 + 1) ? "true" : "false" }' "$TMP/sipp.out"
        ;;
    esac
}

# STEP_US and STEP_WAKES[server,rate], ROUND_MAX[server]: one figure per round, space-separated.
declare -A MAX_RATE MAX_SHOWN STEP_US STEP_WAKES ROUND_MAX ROUND_SHOWN
median() { # the median of the numbers in $1 (nothing if none)
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ a[NR] = $1 } END { if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# One step of the ladder: sets OUT (the load's JSON), STEP_NS (the server's CPU), STEP_RUNS
# (its wake-ups) and VERDICT:
# "pass" (< FAIL_MAX % failed, generator on schedule), "gen" (the generator fell behind or its
# own sockets dropped answers: the step says nothing about the server) or "fail".
step() { # step RATE
    local c0 c1 r0 r1
    read -r c0 r0 <<<"$(cpu_ns)"
    OUT=$(load "$1" "$STEP_SECS")
    read -r c1 r1 <<<"$(cpu_ns)"
    STEP_NS=$((c1 - c0))
    STEP_RUNS=$((r1 - r0))
    if [[ $(jq -r '.kept_up' <<<"$OUT") != true || $(jq -r '.generator_drops' <<<"$OUT") -gt 0 ]]; then
        VERDICT=gen
    elif awk -v p="$(jq -r .failed_pct <<<"$OUT")" -v m="$FAIL_MAX" 'BEGIN { exit !(p < m) }'; then
        VERDICT=pass
    else
        VERDICT=fail
    fi
}

# One rate for server $1: a step, run again while the generator was the limit; a pass raises
# the server's highest rate.
probe() { # probe SERVER RATE
    local try us reg wakes
    for ((try = 0; try <= GEN_RETRIES; try++)); do
        step "$2"
        reg=$(jq -r .registered <<<"$OUT")
        us=$(awk -v ns="$STEP_NS" -v n="$reg" 'BEGIN { printf "%.2f", (n > 0) ? ns / 1e3 / n : 0 }')
        wakes=$(awk -v w="$STEP_RUNS" -v n="$reg" 'BEGIN { printf "%.3f", (n > 0) ? w / n : 0 }')
        log "   $2/s: $VERDICT, $reg of $(jq -r .started <<<"$OUT") registered ($(jq -r .failed_pct <<<"$OUT") % failed), CPU $((STEP_NS / 1000000)) ms, $us µs and $wakes wake-ups per registration"
        [[ $VERDICT == gen ]] || break
    done
    if [[ $VERDICT == pass ]]; then
        STEP_US[$1,$2]+="$us "
        STEP_WAKES[$1,$2]+="$wakes "
    fi
}

for ((round = 1; round <= ROUNDS; round++)); do
    order=$SERVERS
    ((round % 2 == 0)) && order=$(tr ' ' '\n' <<<"$SERVERS" | grep . | tac | tr '\n' ' ')
    for s in $order; do
        PORT=$(free_port)
        log "== round $round of $ROUNDS: $s on CPU $SERVER_CPU, load ($LOAD) on CPU $LOAD_CPU, port $PORT"
        start_server "$s" "$PORT"
        load 200 1 >/dev/null # warm-up
        climb "$s"
        ROUND_MAX[$s]+="${MAX_RATE[$s]} "
        ROUND_SHOWN[$s]+="${MAX_SHOWN[$s]} "
        stop_server
    done
done
# Each server's highest rate: the median of its rounds' (a lower bound if that round's was).
for s in $SERVERS; do
    MAX_RATE[$s]=$(median "${ROUND_MAX[$s]}")
    MAX_SHOWN[$s]=${MAX_RATE[$s]}
    for shown in ${ROUND_SHOWN[$s]}; do
        [[ $shown == ">=${MAX_RATE[$s]}" ]] && MAX_SHOWN[$s]=">=${MAX_RATE[$s]}"
    done
    ((ROUNDS > 1)) && MAX_SHOWN[$s]+=" (rounds: ${ROUND_SHOWN[$s]% })"
done

printf '\n%-10s %34s\n' server "max registrations/s (<${FAIL_MAX}% failed)"
for s in $SERVERS; do printf '%-10s %34s\n' "$s" "${MAX_SHOWN[$s]}"; done
if [[ -n ${MAX_RATE[farside]:-} && -n ${MAX_RATE[farside-pg]:-} ]]; then
    printf '\n%-16s %16s %16s %26s\n' "registrations/s" "SQLite µs/reg" "PostgreSQL µs/reg" "PostgreSQL/SQLite CPU"
    for r in $(printf '%s\n' "${!STEP_US[@]}" | sed -n 's/^farside,//p' | sort -n); do
        f=$(median "${STEP_US[farside,$r]:-}"); p=$(median "${STEP_US[farside-pg,$r]:-}")
        [[ -n $f && -n $p ]] || continue
        awk -v r="$r" -v f="$f" -v p="$p" 'BEGIN { printf "%-16s %16s %16s %26.2f\n", r, f, p, (f > 0) ? p / f : 0 }'
    done
    awk -v rf="${MAX_RATE[farside]}" -v rp="${MAX_RATE[farside-pg]}" -v wb="$WRITE_BEHIND" \
        'BEGIN { printf "\nPostgreSQL/SQLite max registration rate (write_behind = %s): %.2f\n", wb, (rf > 0) ? rp / rf : 0 }'
fi
if [[ -n ${MAX_RATE[farside]:-} && -n ${MAX_RATE[kamailio]:-} ]]; then
    printf '\n%-16s %16s %16s %26s %18s   %s\n' "registrations/s" "farside µs/reg" "kamailio µs/reg" \
        "farside/kamailio CPU" "wake-ups/reg F K" "each round's ratio"
    for r in $(printf '%s\n' "${!STEP_US[@]}" | sed -n 's/^farside,//p' | sort -n); do
        f=$(median "${STEP_US[farside,$r]:-}"); k=$(median "${STEP_US[kamailio,$r]:-}")
        [[ -n $f && -n $k ]] || continue
        # Round i's ratio pairs the i-th figures (a rate one server failed in a round shifts
        # the pairing: such rates are near a ceiling, where the ratio says least).
        rounds=$(paste -d' ' <(tr ' ' '\n' <<<"${STEP_US[farside,$r]}" | grep .) \
            <(tr ' ' '\n' <<<"${STEP_US[kamailio,$r]}" | grep .) |
            awk 'NF == 2 && $2 > 0 { printf "%s%.2f", (NR > 1) ? " " : "", $1 / $2 }')
        wf=$(median "${STEP_WAKES[farside,$r]:-}"); wk=$(median "${STEP_WAKES[kamailio,$r]:-}")
        awk -v r="$r" -v f="$f" -v k="$k" -v e="$rounds" -v wf="$wf" -v wk="$wk" \
            'BEGIN { printf "%-16s %16.2f %16.2f %26.2f %9.2f %8.2f   %s\n", r, f, k, (k > 0) ? f / k : 0, wf, wk, e }'
    done
    bound=""
    [[ ${MAX_SHOWN[farside]} == ">="* ]] && bound=">="
    [[ ${MAX_SHOWN[kamailio]} == ">="* ]] && bound="unbounded, Kamailio's is a lower bound: "
    awk -v rf="${MAX_RATE[farside]}" -v rk="${MAX_RATE[kamailio]}" -v b="$bound" \
        'BEGIN { printf "\nfarside/kamailio max registration rate: %s%.2f (higher is better)\n", b, (rk > 0) ? rf / rk : 0 }'
fi
