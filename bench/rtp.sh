#!/usr/bin/env bash
# RTP relay benchmark: Farside and rtpengine (Debian's rtpengine-daemon, userspace forwarding:
# `--table=-1`, no kernel module), one after the other in one run, each pinned to one CPU with
# the load generator (`farside bench rtp`) pinned to another. Both get the same calls, set up over
# ng the same way (offer, answer, `replace` origin and session-connection), and the same load:
# 172-byte RTP packets (20 ms of G.711), 50 a second each way per call. For each server it prints
#   - memory per call: IDLE_CALLS calls set up (each with its four relay sockets, RTP and RTCP
#     for each side), the growth of its resident memory and of the kernel's slab (where the
#     sockets live), per call,
#   - relayed packets per CPU-second (utime + stime of all its threads) at FIXED_CALLS calls,
#   - up a ladder of call counts (CALLS, STEP_SECS each, one generator run), each step's loss and
#     CPU, and the highest call count with at most LOSS_MAX % loss (the knee),
#   - what happens past the knee: the knee's calls, then 20 % more for OVER_SECS, then half the
#     knee for RECOVER_SECS: the loss in each phase, and the streams broken after the load
#     dropped back (a stream of a call still sending that received nothing in the recovery
#     phase's second half),
# and the ratios Farside/rtpengine. Loopback only. Needs taskset, jq, rtpengine
# (`apt-get install rtpengine-daemon`).
#
# On this kind of machine (two cores) the generator tops out near 400,000 packets a second each
# way, which may be below a server's knee: then the knee is shown as a lower bound (">=") and
# the overload step says little about that server. SHARE_CPU=1 runs a busy loop on the
# server's CPU throughout (for every server alike), so that each gets about half a core and its
# knee, and what happens past it, come within the generator's reach.
#
# rtpengine runs with one worker thread (`--num-threads=1`): pinned to one core, more workers
# would only take turns on it. Its kernel forwarding is off (`--table=-1`) because the
# comparison is of userspace data paths; Farside has no kernel fast path yet.
#
# Knobs: SERVERS="farside rtpengine" SERVER_CPU=0 LOAD_CPU=1 IDLE_CALLS=4000 FIXED_CALLS=1000
#        CALLS="500 1000 1500 2000 2500 3000 3500 4000 4500" STEP_SECS=4 LOSS_MAX=0.01
#        OVER_SECS=10 RECOVER_SECS=6 SHARE_CPU=0 SKIP_BUILD=1 (use target/release/farside)
#        FARSIDE=path
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS=${SERVERS:-"farside rtpengine"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
IDLE_CALLS=${IDLE_CALLS:-4000}
FIXED_CALLS=${FIXED_CALLS:-1000}
CALLS=${CALLS:-"500 1000 1500 2000 2500 3000 3500 4000 4500"}
STEP_SECS=${STEP_SECS:-4}
LOSS_MAX=${LOSS_MAX:-0.01}
OVER_SECS=${OVER_SECS:-10}
RECOVER_SECS=${RECOVER_SECS:-6}
SHARE_CPU=${SHARE_CPU:-0}
NG_PORT=22223

NAME=rtp.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need taskset jq awk
for s in $SERVERS; do
    [[ $s != rtpengine ]] || need rtpengine
done

start_server() { # start_server SERVER
    case $1 in
    farside)
        cat >"$TMP/farside.toml" <<TOML
[stun]
listen = ["127.0.0.1:23478"]
tcp = false
[turn]
enabled = false
[sip]
enabled = false
[rtp]
enabled = true
address = ["127.0.0.1"]
ports = "10000-59999"
ng_listen = ["udp:127.0.0.1:$NG_PORT"]
allowed_peers = ["127.0.0.0/8"]
workers = 1
[store]
url = "sqlite://$TMP/farside.db"
[admin]
listen = "off"
[log]
level = "warn"
TOML
        taskset -c "$SERVER_CPU" "$FARSIDE" serve --config "$TMP/farside.toml" >"$TMP/farside.log" 2>&1 &
        ;;
    rtpengine)
        taskset -c "$SERVER_CPU" rtpengine --config-file=none --foreground --log-stderr \
            --table=-1 --interface=127.0.0.1 --listen-ng="127.0.0.1:$NG_PORT" \
            --port-min=10000 --port-max=59999 --num-threads=1 --delete-delay=0 \
            --log-level=3 >"$TMP/rtpengine.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    sleep 1
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/$1.log" >&2; die "$1 did not start"; }
}

load() { # calls phases -> JSON lines, one per phase
    taskset -c "$LOAD_CPU" "$FARSIDE" bench rtp "127.0.0.1:$NG_PORT" --calls "$1" \
        --phases "$2" --server-pid "$SERVER_PID" --json
}

declare -A PER_CPU KNEE SHOWN OVER RECOVER BROKEN RSS SLAB

HOG_PID=""
stop_hog() { [[ -z $HOG_PID ]] || kill "$HOG_PID" 2>/dev/null || true; HOG_PID=""; }
trap 'stop_hog; stop_server; rm -rf "$TMP"' EXIT

for s in $SERVERS; do
    shared=""
    [[ $SHARE_CPU != 1 ]] || shared=", sharing its CPU with a busy loop"
    log "== $s on CPU $SERVER_CPU$shared, load on CPU $LOAD_CPU"
    start_server "$s"
    if [[ $SHARE_CPU == 1 ]]; then
        taskset -c "$SERVER_CPU" sh -c 'while :; do :; done' &
        HOG_PID=$!
    fi
    load 100 "100:1" >/dev/null # warm-up
    out=$(load "$IDLE_CALLS" "1:1")
    RSS[$s]=$(jq -r '.rss_bytes_per_call // 0 | floor' <<<"$out")
    SLAB[$s]=$(jq -r '.slab_bytes_per_call // 0 | floor' <<<"$out")
    log "   $IDLE_CALLS idle calls: ${RSS[$s]} bytes of resident memory per call, ${SLAB[$s]} of kernel slab"
    out=$(load "$FIXED_CALLS" "$FIXED_CALLS:$STEP_SECS")
    PER_CPU[$s]=$(jq -r '.relayed_per_cpu_second // 0 | floor' <<<"$out")
    log "   $FIXED_CALLS calls: $(jq -r '"loss \(.loss_pct) %, CPU \(.server_cpu_seconds) s"' <<<"$out"), ${PER_CPU[$s]} relayed per CPU-second"

    # The ladder, one run: the calls of its top step are set up, and each step sends from the
    # first N of them.
    top=0 phases=""
    for n in $CALLS; do top=$n; phases+="${phases:+,}$n:$STEP_SECS"; done
    # A step fails on loss above LOSS_MAX; if the generator's own sockets dropped at least half
    # of what was lost, it could not keep up and the ladder ends there with a lower bound.
    KNEE[$s]=0
    verdict=pass
    while read -r line; do
        n=$(jq -r .calls <<<"$line")
        loss=$(jq -r .loss_pct <<<"$line")
        gen=$(jq -r .generator_drops <<<"$line")
        lost=$(jq -r '.sent - .received' <<<"$line")
        log "   $n calls: loss $loss % ($lost packets; $gen dropped at the generator's sockets), CPU $(jq -r '.server_cpu_seconds' <<<"$line") s, $(jq -r '.relayed_per_cpu_second // 0 | floor' <<<"$line") relayed per CPU-second"
        [[ $verdict == pass ]] || continue
        if awk -v l="$loss" -v m="$LOSS_MAX" 'BEGIN { exit !(l <= m) }'; then
            KNEE[$s]=$n
        elif ((2 * gen >= lost)); then
            verdict=gen
        else
            verdict=fail
        fi
    done < <(load "$top" "$phases")
    SHOWN[$s]=${KNEE[$s]}
    if [[ $verdict != fail ]]; then
        SHOWN[$s]=">=${KNEE[$s]}"
        case $verdict in
        gen) log "   the generator, not $s, was the limit above ${KNEE[$s]} calls: a lower bound" ;;
        pass) log "   $s passed the top of the ladder: a lower bound" ;;
        esac
    fi

    # 20 % past the knee, then back to half of it.
    k=${KNEE[$s]}
    if ((k > 0)); then
        over=$((k * 12 / 10))
        half=$((k / 2))
        mapfile -t lines < <(load "$over" "$k:3,$over:$OVER_SECS,$half:$RECOVER_SECS")
        OVER[$s]=$(jq -r .loss_pct <<<"${lines[1]}")
        RECOVER[$s]=$(jq -r .loss_pct <<<"${lines[2]}")
        BROKEN[$s]=$(jq -r .broken_streams <<<"${lines[2]}")
        log "   $over calls (knee + 20 %) for ${OVER_SECS} s: loss ${OVER[$s]} %; then $half calls: loss ${RECOVER[$s]} %, ${BROKEN[$s]} broken streams"
    fi
    stop_hog
    stop_server
done

printf '\n%-10s %14s %14s %26s %24s %18s %22s %15s\n' server "RSS B/call" "slab B/call" "relayed/CPU-s at $FIXED_CALLS calls" "max calls (<=${LOSS_MAX}% loss)" "loss at knee+20%" "loss after, at knee/2" "broken streams"
for s in $SERVERS; do
    printf '%-10s %14s %14s %26s %24s %18.2f %22.2f %15s\n' "$s" "${RSS[$s]}" "${SLAB[$s]}" "${PER_CPU[$s]}" "${SHOWN[$s]}" "${OVER[$s]:-0}" "${RECOVER[$s]:-0}" "${BROKEN[$s]:--}"
done
if [[ -n ${PER_CPU[farside]:-} && -n ${PER_CPU[rtpengine]:-} ]]; then
    bound=""
    [[ ${SHOWN[farside]} == ">="* ]] && bound=">="
    [[ ${SHOWN[rtpengine]} == ">="* ]] && bound="unbounded, rtpengine's is a lower bound: "
    awk -v f="${PER_CPU[farside]}" -v r="${PER_CPU[rtpengine]}" -v kf="${KNEE[farside]}" -v kr="${KNEE[rtpengine]}" \
        -v n="$FIXED_CALLS" -v b="$bound" \
        'BEGIN { printf "\nfarside/rtpengine (higher is better): relayed packets per CPU-second at %d calls %.2f; max loss-free calls %s%.2f\n", n, (r > 0) ? f / r : 0, b, (kr > 0) ? kf / kr : 0 }'
fi
