#!/usr/bin/env bash
# Soak: REGS SIP registrations (100 000 by default) held with keep-alives running, and ALLOCS TURN
# allocations held with a channel each, on one Farside; reports the memory each costs (the
# server's resident set size grown over the count: heap and tables, socket buffers aside, which
# the kernel holds) and the CPU time of the keep-alives. Bounded: the registrations are made in
# REGS/RATE seconds, the keep-alives watched for WATCH_SECS, the allocations held HOLD_SECS; about
# three minutes in all with the defaults. Loopback only. Needs python3 (to seed the users), jq.
#
# The phones are `farside bench sip`'s, behind a NAT (private Contacts: every binding is NATed and
# pinged): REGS users, seeded straight into the store (one `farside user add` each would take an
# hour), one registration each. The allocations are `farside bench turn`'s (ephemeral credentials,
# a channel to an echo peer, a little traffic); each needs a relay socket on the server and a
# client socket in the generator, so ALLOCS is capped by the open-file limit of this machine
# (`ulimit -Hn`), not by Farside.
#
# Knobs: REGS=100000 RATE=2000 WATCH_SECS=30 ALLOCS=(open-file limit - 2000) HOLD_SECS=40
#        INTERVAL=25 (keep-alive seconds) METHOD=CRLF SKIP_BUILD=1 FARSIDE=path
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME=soak
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need python3 jq awk

REGS=${REGS:-100000}
RATE=${RATE:-2000}
WATCH_SECS=${WATCH_SECS:-30}
HOLD_SECS=${HOLD_SECS:-40}
INTERVAL=${INTERVAL:-25}
METHOD=${METHOD:-CRLF}
HARD=$(ulimit -Hn)
ulimit -n "$HARD"
ALLOCS=${ALLOCS:-$((HARD - 2000))}
PORT=25060
SECRET=soak-test-shared-secret-0123456789
PASSWORD=bench-password

cat >"$TMP/farside.toml" <<TOML
[stun]
listen = ["127.0.0.1:$((PORT + 1))"]
tcp = false
[turn]
enabled = true
# Outside the kernel's ephemeral range, where the generator's own sockets are.
relay_ports = "10000-31999"
allowed_peers = ["127.0.0.0/8"]
auth_secrets = ["$SECRET"]
max_allocations = $((ALLOCS + 1000))
max_allocations_per_user = 0
refusals_per_second = 0
[sip]
enabled = true
listen = ["udp:127.0.0.1:$PORT"]
domain = "example.org"
max_aors = $((REGS + 1000))
refusals_per_second = 0
[sip.keepalive]
interval = "${INTERVAL}s"
method = "$METHOD"
[rtp]
enabled = false
[store]
url = "sqlite://$TMP/farside.db"
[admin]
listen = "off"
[log]
level = "warn"
TOML

log "seeding $REGS users into the store"
"$FARSIDE" user add seed --password x --realm example.org --config "$TMP/farside.toml" >/dev/null
python3 - "$TMP/farside.db" "$REGS" "$PASSWORD" <<'PY'
import hashlib, sqlite3, sys, time
db, n, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db)
now = int(time.time())
rows = []
for i in range(n):
    name = f"user{i}"
    joined = f"{name}:example.org:{password}".encode()
    rows.append(("example.org", name, hashlib.md5(joined).digest(), hashlib.sha256(joined).digest(), now, now))
c.executemany("INSERT INTO users (realm, name, key_md5, key_sha256, created, updated) VALUES (?,?,?,?,?,?)", rows)
c.execute("UPDATE generation SET value = value + 1")
c.commit()
PY

"$FARSIDE" serve --config "$TMP/farside.toml" >"$TMP/farside.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "S405" "$TMP/farside.log" 2>/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; } # KiB
cpu() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }   # ticks
TICK=$(getconf CLK_TCK)
sleep 1
RSS0=$(rss)

log "registering $REGS phones at $RATE/s"
OUT=$("$FARSIDE" bench sip "127.0.0.1:$PORT" --rate "$RATE" --duration $(((REGS + RATE - 1) / RATE)) \
    --users "$REGS" --password "$PASSWORD" --domain example.org --sockets 64 --timeout-ms 10000 --json)
REGISTERED=$(jq -r .registered <<<"$OUT")
sleep 2
RSS1=$(rss)
PER_REG=$(awk -v a="$RSS0" -v b="$RSS1" -v n="$REGISTERED" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')

log "watching the keep-alives for ${WATCH_SECS}s"
C0=$(cpu)
sleep "$WATCH_SECS"
C1=$(cpu)
PINGS=$(awk -v n="$REGISTERED" -v w="$WATCH_SECS" -v i="$INTERVAL" 'BEGIN { printf "%.0f", n * w / i }')
CPU_PCT=$(awk -v a="$C0" -v b="$C1" -v t="$TICK" -v w="$WATCH_SECS" 'BEGIN { printf "%.1f", (b - a) / t / w * 100 }')
US_PER_PING=$(awk -v a="$C0" -v b="$C1" -v t="$TICK" -v p="$PINGS" 'BEGIN { printf "%.2f", (b - a) / t * 1e6 / p }')
BINDINGS_LEFT=$(grep -c "S409" "$TMP/farside.log" || true)

log "holding $ALLOCS allocations for ${HOLD_SECS}s"
"$FARSIDE" bench turn "127.0.0.1:$((PORT + 1))" --secret "$SECRET" --clients "$ALLOCS" \
    --rate $((ALLOCS / 10 + 1)) --seconds "$HOLD_SECS" --json >"$TMP/turn.json" 2>"$TMP/turn.err" &
GEN=$!
sleep $((HOLD_SECS * 3 / 4))
RSS2=$(rss)
wait "$GEN" || die "the TURN load failed: $(tail -n 3 "$TMP/turn.err")"
ALLOCATED=$(jq -r .clients "$TMP/turn.json")
PER_ALLOC=$(awk -v a="$RSS1" -v b="$RSS2" -v n="$ALLOCATED" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')

cat <<REPORT
soak: one Farside on loopback
  registrations: $REGISTERED of $REGS registered; resident memory $((RSS0 / 1024)) -> $((RSS1 / 1024)) MiB: $PER_REG bytes per registration (goal <= 1024)
  keep-alives:   $METHOD every ${INTERVAL}s to every binding (~$PINGS pings in ${WATCH_SECS}s): server CPU $CPU_PCT % of one core, $US_PER_PING us per ping; bindings removed meanwhile: $BINDINGS_LEFT
  allocations:   $ALLOCATED held (the open-file limit here is $HARD); resident memory -> $((RSS2 / 1024)) MiB: $PER_ALLOC bytes per allocation, socket buffers aside (goal <= 4096)
  generator:     $(jq -c '{registered, failed, timed_out, rejected}' <<<"$OUT")
REPORT
