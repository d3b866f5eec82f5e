#!/usr/bin/env bash
# STUN Binding benchmark: Farside, coturn and the bare batched UDP responder (the floor the
# kernel sets), one after the other in one run, each server pinned to one CPU and the load
# generator (`farside bench stun`) pinned to another. For each server it prints:
#   - the highest open-loop rate answered with < 0.1 % loss (bisection over rates),
#   - the server's CPU time per request at a fixed 100 k requests/s (utime + stime of all its
#     threads, from /proc/PID/stat, divided by the requests it answered),
# and the ratios Farside/coturn and Farside/responder. Method and recorded figures:
# docs/benchmarks.md.
#
# Loopback only. Needs: taskset, jq, turnserver (coturn) for the coturn row, cargo.
# Runs in about 3 minutes after the build (bounded: each run is bounded, and the script gives
# up 10 minutes after the build).
#
# Knobs (environment):
#   SERVERS="farside coturn responder"  which rows to run
#   SERVER_CPU=0 LOAD_CPU=1             the CPUs for the server and the load generator
#   FIXED_RATE=100000 CPU_SECS=5        the CPU-per-request run
#   SEARCH_LO=50000 SEARCH_HI=600000    the bisection range (requests/s)
#   SEARCH_SECS=3 SEARCH_STEPS=7        seconds per probe, bisection steps after the ends
#   LOSS_MAX=0.1                        loss (percent) a rate may have and still pass
#   QUIET_WAIT=120                      seconds, in all, to wait for the machine to be idle
#   NOISE_MAX=5                         percent of the machine other work may take in a run
#                                       before the run is repeated (twice at most)
#   GEN_RETRIES=2                       repeats of a probe the generator could not hold
#   SKIP_BUILD=1                        use the existing target/release/farside
#   FARSIDE=path                        use this farside binary (implies SKIP_BUILD=1)
#   BENCH_OPTS="--sockets 8 --batch 32" extra options for `farside bench stun`
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS=${SERVERS:-"farside coturn responder"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
FIXED_RATE=${FIXED_RATE:-100000}
CPU_SECS=${CPU_SECS:-5}
SEARCH_LO=${SEARCH_LO:-50000}
SEARCH_HI=${SEARCH_HI:-600000}
SEARCH_SECS=${SEARCH_SECS:-3}
SEARCH_STEPS=${SEARCH_STEPS:-7}
LOSS_MAX=${LOSS_MAX:-0.1}
QUIET_WAIT=${QUIET_WAIT:-120}
NOISE_MAX=${NOISE_MAX:-5}
GEN_RETRIES=${GEN_RETRIES:-2}
BENCH_OPTS=${BENCH_OPTS:-}
CLK_TCK=$(getconf CLK_TCK)

NAME=stun.sh
# --- messages, the binary, the scratch directory, the server under test ------------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need taskset jq awk
DEADLINE=$((SECONDS + 600))
trap 'exit 130' INT TERM

check_deadline() {
    ((SECONDS < DEADLINE)) || die "over the 10-minute budget; giving up"
}

# --- helpers ----------------------------------------------------------------------------------

# A UDP and TCP port nobody on this host uses (checked against /proc/net).
free_port() {
    local port hex
    while :; do
        port=$((20000 + RANDOM % 30000))
        hex=$(printf ':%04X' "$port")
        if ! cat /proc/net/udp /proc/net/udp6 /proc/net/tcp /proc/net/tcp6 2>/dev/null |
            awk '{print $2}' | grep -q "${hex}\$"; then
            echo "$port"
            return
        fi
    done
}

# utime + stime of every thread of a process, in clock ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# Datagrams the kernel dropped on the server's UDP sockets on PORT (receive buffer full), from
# the last column of /proc/net/udp{,6}.
udp_drops() { # udp_drops PORT
    local hex
    hex=$(printf ':%04X' "$1")
    cat /proc/net/udp /proc/net/udp6 2>/dev/null | awk -v p="$hex" '
        index($2, p) == length($2) - length(p) + 1 { d += $NF } END { print d + 0 }'
}

# Busy and total ticks of all CPUs together, from /proc/stat.
all_ticks() {
    awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat
}

# Waits until the machine is < 10 % busy over a second, so that other work (builds, tests)
# does not skew the figures: at most QUIET_WAIT seconds over the whole script, then goes on
# with a warning.
QUIET_SPENT=0
wait_quiet() {
    local b0 t0 b1 t1 pct said=0
    while :; do
        read -r b0 t0 < <(all_ticks)
        sleep 1
        read -r b1 t1 < <(all_ticks)
        pct=$(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
        ((pct < 10)) && return 0
        if ((QUIET_SPENT >= QUIET_WAIT)); then
            log "   WARNING: the machine is ${pct} % busy with other work; going on anyway"
            NOISY=1
            return 0
        fi
        ((said)) || log "   waiting for the machine to go quiet (${pct} % busy)..."
        said=1
        QUIET_SPENT=$((QUIET_SPENT + 1))
    done
}

# One load run; prints the generator's JSON report.
load() { # load PORT ARGS...
    local port=$1
    shift
    check_deadline
    # shellcheck disable=SC2086
    timeout 320 taskset -c "$LOAD_CPU" "$FARSIDE" bench stun "127.0.0.1:$port" --json $BENCH_OPTS "$@"
}

# Waits until the server on PORT answers Binding requests (up to 15 s).
wait_ready() { # wait_ready PORT NAME
    local out
    for _ in $(seq 75); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$2 exited; its output:"
            tail -n 20 "$TMP/$2.log" >&2 || true
            die "$2 did not start"
        fi
        out=$(load "$1" --window 1 --duration 0.1 --drain-ms 50 --timeout-ms 50 2>/dev/null || true)
        if [[ -n $out ]] && (($(jq -r .answered <<<"$out") > 0)); then
            return 0
        fi
        sleep 0.2
    done
    die "$2 does not answer on 127.0.0.1:$1"
}

start_server() { # start_server NAME PORT
    local name=$1 port=$2
    case $name in
    farside)
        local admin_port
        admin_port=$(free_port)
        cat >"$TMP/farside.toml" <<EOF
[stun]
listen = ["127.0.0.1:$port"]
tcp = false
workers = 1

[turn]
enabled = false
[sip]
enabled = false
[rtp]
enabled = false

[admin]
listen = "127.0.0.1:$admin_port"

[log]
level = "warn"
EOF
        taskset -c "$SERVER_CPU" "$FARSIDE" serve --config "$TMP/farside.toml" \
            >"$TMP/farside.log" 2>&1 &
        ;;
    coturn)
        # STUN only, no auth, one relay thread, UDP on loopback only, no TCP/TLS/DTLS, no CLI,
        # no log file. The answer is made the same as Farside's and the responder's (header +
        # XOR-MAPPED-ADDRESS, 32 bytes): no SOFTWARE, no MAPPED-ADDRESS, no RESPONSE-ORIGIN,
        # no RFC 5780 OTHER-ADDRESS.
        taskset -c "$SERVER_CPU" turnserver -n --stun-only --no-auth \
            --listening-ip 127.0.0.1 --listening-port "$port" --relay-threads 1 \
            --no-tcp --no-tls --no-dtls --no-tcp-relay --no-cli --no-auth-pings \
            --no-rfc5780 --no-stun-backward-compatibility --response-origin-only-with-rfc5780 \
            --no-software-attribute --log-file stdout --simple-log \
            --pidfile "$TMP/turnserver.pid" >"$TMP/coturn.log" 2>&1 &
        ;;
    responder)
        taskset -c "$SERVER_CPU" "$FARSIDE" bench responder "127.0.0.1:$port" --threads 1 \
            >"$TMP/responder.log" 2>&1 &
        ;;
    *) die "unknown server $name" ;;
    esac
    SERVER_PID=$!
    wait_ready "$port" "$name"
}

# Does this JSON report pass: loss under LOSS_MAX, generator on schedule and dropping nothing?
# Prints "pass", "fail" or "gen" (the generator, not the server, was the limit).
verdict() {
    jq -r --argjson max "$LOSS_MAX" '
        if (.kept_up | not) or .generator_drops > 0 then "gen"
        elif .loss_pct < $max then "pass" else "fail" end' <<<"$1"
}

# --- the run ----------------------------------------------------------------------------------
NOISY=0
KSOFTIRQD=$(pgrep '^ksoftirqd/' | tr '\n' ' ' || true)
declare -A RATE RATE_SHOWN RATE_NOTE CPU_US LOSS_FIXED P50 P99

# CPU ticks of the kernel's softirq threads: network work deferred from the server or the
# generator, so part of the benchmark rather than noise.
softirqd_ticks() {
    local pid total=0
    for pid in $KSOFTIRQD; do
        [[ -r /proc/$pid/stat ]] && total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# One load run with the machine's other work accounted: sets OUT (the generator's JSON report),
# SRV_TICKS (the server's CPU ticks during the run), SRV_DROPS (datagrams the kernel dropped
# on the server's sockets: the server did not keep up) and OTHER (percent of all CPUs used by
# anything but the server, the generator and ksoftirqd). A run with other work above
# NOISE_MAX % is done again after waiting for quiet, up to twice.
measured_load() { # measured_load PORT ARGS...
    local b0 t0 b1 t1 s0 s1 k0 k1 d0 gen
    for try in 1 2 3; do
        d0=$(udp_drops "$1")
        read -r b0 t0 < <(all_ticks)
        s0=$(cpu_ticks "$SERVER_PID")
        k0=$(softirqd_ticks)
        OUT=$(load "$@")
        read -r b1 t1 < <(all_ticks)
        s1=$(cpu_ticks "$SERVER_PID")
        k1=$(softirqd_ticks)
        SRV_DROPS=$(($(udp_drops "$1") - d0))
        gen=$(jq -r --argjson hz "$CLK_TCK" '(.generator_cpu_s // 0) * $hz | round' <<<"$OUT")
        SRV_TICKS=$((s1 - s0))
        OTHER=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v s="$SRV_TICKS" -v g="$gen" \
            -v k=$((k1 - k0)) 'BEGIN { o = b - s - g - k; if (o < 0) o = 0; printf "%.0f", (t > 0) ? (100 * o / t) : 0 }')
        ((OTHER <= NOISE_MAX)) && return 0
        if ((try < 3)); then
            log "   (other work took ${OTHER} % of the machine during that run: again)"
            wait_quiet
        fi
    done
    log "   WARNING: other work took ${OTHER} % of the machine during this run"
    NOISY=1
}

measure() { # measure NAME
    local name=$1 port answered
    port=$(free_port)
    log ""
    log "== $name on 127.0.0.1:$port (server on CPU $SERVER_CPU, load on CPU $LOAD_CPU)"
    start_server "$name" "$port"
    wait_quiet

    # (a) CPU per request at a fixed rate, after a 1 s warm-up.
    load "$port" --rate "$FIXED_RATE" --duration 1 >/dev/null
    sleep 0.3
    measured_load "$port" --rate "$FIXED_RATE" --duration "$CPU_SECS"
    answered=$(jq -r .answered <<<"$OUT")
    CPU_US[$name]=$(awk -v d="$SRV_TICKS" -v hz="$CLK_TCK" -v n="$answered" \
        'BEGIN { printf "%.2f", (n > 0) ? (d * 1e6 / hz / n) : 0 }')
    LOSS_FIXED[$name]=$(jq -r '.loss_pct' <<<"$OUT")
    P50[$name]=$(jq -r '.p50_us | floor' <<<"$OUT")
    P99[$name]=$(jq -r '.p99_us | floor' <<<"$OUT")
    log "   at $FIXED_RATE/s: $(jq -r '"answered \(.answered) of \(.sent), loss \(.loss_pct) %, p50 \(.p50_us) µs, p99 \(.p99_us) µs, kept up: \(.kept_up), generator CPU \(.generator_cpu_s) s"' <<<"$OUT")"
    log "   server CPU: $SRV_TICKS ticks of 1/$CLK_TCK s => ${CPU_US[$name]} µs per answered request (other work: ${OTHER} % of the machine)"
    if [[ $(jq -r .kept_up <<<"$OUT") != true ]]; then
        log "   WARNING: the generator did not keep up with $FIXED_RATE/s"
    fi

    # (b) The highest rate with loss < LOSS_MAX: probe both ends, then bisect.
    local lo=0 hi=0 hi_v="" rate v
    # A probe the generator could not hold says nothing about the server: it is done again, up
    # to GEN_RETRIES times (except at the top of the range, where that is expected).
    probe() { # probe RATE [ATTEMPTS] -> sets v
        local attempt
        for ((attempt = 1; attempt <= ${2:-$((GEN_RETRIES + 1))}; attempt++)); do
            sleep 0.5 # let the server drain its queue from the last probe
            measured_load "$port" --rate "$1" --duration "$SEARCH_SECS"
            v=$(verdict "$OUT")
            log "   $(printf '%7d' "$1")/s: $v ($(jq -r '"answered \(.answered_per_s)/s, loss \(.loss_pct) %, p99 \(.p99_us) µs, sent \(.sent_per_s)/s, generator drops \(.generator_drops), generator CPU \(.generator_cpu_s) s"' <<<"$OUT"); server socket drops $SRV_DROPS; other work ${OTHER} %)"
            [[ $v == gen ]] || return 0
        done
    }
    probe "$SEARCH_LO"
    if [[ $v != pass ]]; then
        RATE[$name]=0
        RATE_SHOWN[$name]="<$SEARCH_LO/s"
        RATE_NOTE[$name]="below the bottom of the search range"
    else
        lo=$SEARCH_LO
        probe "$SEARCH_HI" 1
        if [[ $v == pass ]]; then
            RATE[$name]=$SEARCH_HI
            RATE_SHOWN[$name]=">=$SEARCH_HI/s"
            RATE_NOTE[$name]="the top of the search range"
        else
            hi=$SEARCH_HI
            hi_v=$v
            for _ in $(seq "$SEARCH_STEPS"); do
                ((hi - lo > lo / 50 && hi - lo > 2000)) || break
                rate=$(((lo + hi) / 2 / 1000 * 1000))
                probe "$rate"
                if [[ $v == pass ]]; then lo=$rate; else hi=$rate hi_v=$v; fi
            done
            RATE[$name]=$lo
            RATE_NOTE[$name]=""
            if [[ $hi_v == gen ]]; then
                RATE_NOTE[$name]="a lower bound: the generator, not the server, failed at $hi/s"
                RATE_SHOWN[$name]=">=$lo/s"
            fi
        fi
    fi
    log "   highest rate with < $LOSS_MAX % loss: ${RATE[$name]}/s ${RATE_NOTE[$name]}"
    stop_server
}

log "STUN Binding benchmark: $(date -u '+%Y-%m-%d %H:%M UTC')"
log "machine: $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }'), $(nproc) CPUs, kernel $(uname -r)"
for name in $SERVERS; do
    if [[ $name == coturn ]] && ! command -v turnserver >/dev/null; then
        log "coturn: turnserver not installed, skipped"
        continue
    fi
    measure "$name"
done

# --- the table --------------------------------------------------------------------------------
echo
echo "STUN Binding, one server CPU ($SERVER_CPU), load on CPU $LOAD_CPU, loopback"
echo "machine: $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }'), $(nproc) CPUs, kernel $(uname -r)"
command -v turnserver >/dev/null && echo "coturn: $(turnserver --version 2>/dev/null | head -n 1)"
echo
printf '%-10s  %-20s  %-20s  %-12s  %s\n' server "max rate, <${LOSS_MAX}% loss" \
    "CPU µs/req @${FIXED_RATE}/s" "loss @${FIXED_RATE}/s" "p50/p99 µs @${FIXED_RATE}/s"
for name in $SERVERS; do
    [[ -n ${CPU_US[$name]:-} ]] || continue
    printf '%-10s  %-20s  %-20s  %-12s  %s\n' "$name" "${RATE_SHOWN[$name]:-${RATE[$name]}/s}" "${CPU_US[$name]}" \
        "${LOSS_FIXED[$name]} %" "${P50[$name]}/${P99[$name]}"
done
for name in $SERVERS; do
    if [[ -n ${RATE_NOTE[$name]:-} ]]; then echo "  $name max rate: ${RATE_NOTE[$name]}"; fi
done
ratio() { # ratio A B: A/B to two places, or "-" when either is missing or zero
    awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "-" }'
}
echo
for pair in "farside coturn" "farside responder" "responder coturn"; do
    read -r a b <<<"$pair"
    [[ -n ${CPU_US[$a]:-} && -n ${CPU_US[$b]:-} ]] || continue
    echo "$a/$b: CPU per request $(ratio "${CPU_US[$a]}" "${CPU_US[$b]}"), max loss-free rate $(ratio "${RATE[$a]}" "${RATE[$b]}")"
done
if ((NOISY)); then
    echo "WARNING: other work on the machine disturbed some runs (see above); figures may be low"
fi
exit 0
