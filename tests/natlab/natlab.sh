#!/usr/bin/env bash
# Farside NAT lab: network namespaces with real Linux netfilter NAT gateways, LAN hosts behind them, an
# "internet" router without a default route, a server host with two public addresses and a public peer.
#
#   natlab.sh up                 build the lab (needs root)
#   natlab.sh down               remove everything this prefix made (idempotent)
#   natlab.sh status             which namespaces exist, which processes run in them
#   natlab.sh list               host names, one a line: NAME NAMESPACE ROLE ADDRESSES
#   natlab.sh describe [--json]  hosts, addresses and each LAN host's expected NAT behaviour
#   natlab.sh exec HOST CMD...   run CMD inside HOST's namespace
#
# Environment: NATLAB_PREFIX (default `fl`; letters, digits and `_`, at most 12) names this lab's namespaces
# `<prefix>-<host>`, so that two labs with different prefixes never collide. See docs/natlab.md.
#
# Exit codes: 0 ok, 1 failure, 2 cannot run here (not root, tool missing), 3 usage, 4 prefix already in use.

set -Eeuo pipefail

PREFIX="${NATLAB_PREFIX:-fl}"
if [[ ! "$PREFIX" =~ ^[A-Za-z0-9_]{1,12}$ ]]; then
    echo "natlab: NATLAB_PREFIX=$PREFIX: use 1-12 letters, digits or _" >&2
    exit 3
fi

# ---------------------------------------------------------------------------------------------------------
# The topology, in one place. `describe` prints it; `up` builds it.

# Gateways in order; index N gives WAN 198.51.100.1N and LAN 192.168.N.0/24.
GATEWAYS=(home symmetric fullcone restricted short alg symmetric2)
declare -A GW_INDEX=([home]=1 [symmetric]=2 [fullcone]=3 [restricted]=4 [short]=5 [alg]=6 [symmetric2]=7)
declare -A GW_LANS=([home]=2 [symmetric]=1 [fullcone]=2 [restricted]=1 [short]=1 [alg]=2 [symmetric2]=1)
# Expected behaviour of each gateway, as seen from its LAN hosts (RFC 4787 / RFC 5780 terms).
declare -A GW_MAPPING=([home]=EIM [symmetric]=APDM [fullcone]=EIM [restricted]=EIM [short]=EIM [alg]=EIM [symmetric2]=APDM)
declare -A GW_FILTERING=([home]=APDF [symmetric]=APDF [fullcone]=EIF [restricted]=ADF [short]=APDF [alg]=APDF [symmetric2]=APDF)
declare -A GW_HAIRPIN=([home]=no [symmetric]=no [fullcone]=yes [restricted]=no [short]=no [alg]=no [symmetric2]=no)
# Binding lifetime in seconds after the last packet of a flow that has seen one request/response exchange
# (conntrack's nf_conntrack_udp_timeout), and after a flow that kept exchanging packets for over 2 s
# (nf_conntrack_udp_timeout_stream).
declare -A GW_LIFETIME=([home]=30 [symmetric]=30 [fullcone]=30 [restricted]=30 [short]=20 [alg]=30 [symmetric2]=30)
declare -A GW_LIFETIME_STREAM=([home]=120 [symmetric]=120 [fullcone]=120 [restricted]=120 [short]=20 [alg]=120 [symmetric2]=120)
declare -A GW_CLASSIC=([home]=port-restricted-cone [symmetric]=symmetric [fullcone]=full-cone
    [restricted]=restricted-cone [short]=port-restricted-cone [alg]=port-restricted-cone [symmetric2]=symmetric)
declare -A GW_SIP_ALG=([home]=no [symmetric]=no [fullcone]=no [restricted]=no [short]=no [alg]=yes [symmetric2]=no)

INET_ADDRS=(203.0.113.1 198.51.100.1 192.0.2.1)
SERVER_ADDRS=(203.0.113.10 203.0.113.11)
PEER_ADDR=192.0.2.20

gw_wan() { echo "198.51.100.1${GW_INDEX[$1]}"; }
gw_lan_net() { echo "192.168.${GW_INDEX[$1]}"; }

# All host names, in build order.
all_hosts() {
    local g i
    printf "%s\n" inet server peer
    for g in "${GATEWAYS[@]}"; do
        echo "$g"
        for ((i = 1; i <= GW_LANS[$g]; i++)); do echo "$g-lan$i"; done
    done
}

ns_of() { echo "$PREFIX-$1"; }

host_exists() {
    local h
    for h in $(all_hosts); do [[ "$h" == "$1" ]] && return 0; done
    return 1
}

# ---------------------------------------------------------------------------------------------------------
# Helpers

die() {
    echo "natlab: $*" >&2
    exit 1
}

ns_present() { [[ -e "/run/netns/$1" ]]; }

our_namespaces() {
    local h
    for h in $(all_hosts); do
        if ns_present "$(ns_of "$h")"; then ns_of "$h"; fi
    done
}

# sysctl inside a namespace; several key=value pairs in one call.
nsctl() {
    local ns=$1
    shift
    ip netns exec "$ns" sysctl -q -w "$@" >/dev/null
}

# The same for keys that exist only while a module is loaded (br_netfilter): a missing key is skipped.
nsctl_if_present() {
    local ns=$1 kv
    shift
    for kv in "$@"; do
        if ip netns exec "$ns" test -e "/proc/sys/$(tr . / <<<"${kv%%=*}")"; then
            nsctl "$ns" "$kv"
        fi
    done
}

# On a modular kernel, load what the lab uses (a built-in kernel, like the one natlab-facts.md describes, has
# no modprobe and needs nothing). Failures are left to the steps that need the module, which report them.
load_modules() {
    command -v modprobe >/dev/null || return 0
    local m
    for m in veth bridge nf_tables nf_conntrack nf_nat nft_ct nft_nat nft_masq nft_chain_nat \
        nf_conntrack_sip nf_nat_sip; do
        modprobe -q "$m" 2>/dev/null || true
    done
}

HOST_INDEX=0

# A fresh namespace with the lab's base settings: loopback up, no IPv6, no reverse-path filter.
make_ns() {
    local ns=$1 role=$2
    ip netns add "$ns"
    local common=(net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1)
    if [[ "$role" == router ]]; then
        nsctl "$ns" "${common[@]}" net.ipv4.ip_forward=1 \
            net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 \
            net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.default.accept_redirects=0
        # Bridged frames must not pass through the IP hooks (only when br_netfilter is loaded can they).
        nsctl_if_present "$ns" net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
            net.bridge.bridge-nf-call-arptables=0
    else
        # Each host draws ephemeral ports from its own range: two LAN hosts behind one gateway
        # never pick the same local port, so masquerade's port preservation and the full-cone
        # map (keyed by WAN port) cannot mix their flows up.
        local lo=$((20000 + HOST_INDEX * 2000))
        HOST_INDEX=$((HOST_INDEX + 1))
        nsctl "$ns" "${common[@]}" net.ipv4.ip_forward=0 \
            net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.default.accept_redirects=0 \
            "net.ipv4.ip_local_port_range=$lo $((lo + 1999))"
    fi
    ip -n "$ns" link set lo up
}

# A veth pair between two namespaces; neither end ever exists in the host's namespace.
veth() {
    local ns_a=$1 if_a=$2 ns_b=$3 if_b=$4
    ip link add "$if_a" netns "$ns_a" type veth peer name "$if_b" netns "$ns_b"
}

bridge() {
    local ns=$1 br=$2
    ip -n "$ns" link add "$br" type bridge
    ip -n "$ns" link set "$br" up
}

# ---------------------------------------------------------------------------------------------------------
# NAT rules of each gateway (nft). WAN interface `wan`, LAN bridge `lan`.

nat_rules() {
    local g=$1 wan
    wan=$(gw_wan "$g")
    # Every gateway: drop new connections arriving on the WAN unless a DNAT rule made them (a public host
    # routing straight to a LAN address gets nothing), masquerade LAN traffic leaving on the WAN.
    local forward='chain forward { type filter hook forward priority filter; policy accept;
        iifname "wan" ct state new ct status dnat accept
        iifname "wan" ct state new drop
    }'
    case "$g" in
    home | short)
        cat <<EOF
table ip natlab {
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
    $forward
}
EOF
        ;;
    symmetric | symmetric2)
        cat <<EOF
table ip natlab {
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade fully-random
    }
    $forward
}
EOF
        ;;
    fullcone | restricted)
        # Masquerade, then learn "WAN port -> LAN ip . port" from LAN-opened UDP flows after srcnat; new
        # inbound UDP to a learned WAN port is DNATed to its LAN owner. Entries live 30 s after the last
        # outbound packet, as a conntrack UDP entry does after one exchange.
        local restrict="" learn_contacted="" hairpin_pre="" hairpin_post="" contacted_set=""
        if [[ "$g" == restricted ]]; then
            # Address-restricted: only remote addresses the LAN has sent to from that WAN port get in.
            contacted_set='set contacted { type ipv4_addr . inet_service; flags dynamic, timeout; timeout 30s; }'
            learn_contacted='iifname "lan" oifname "wan" meta l4proto udp update @contacted { ip daddr . udp sport timeout 30s }'
            restrict='chain restrict { type filter hook prerouting priority dstnat - 10; policy accept;
        iifname "wan" meta l4proto udp ct state new ip saddr . udp dport != @contacted drop
    }'
        else
            # Hairpinning: LAN packets to the WAN address go through the same map and leave with the WAN address.
            hairpin_pre="iifname \"lan\" ip daddr $wan meta l4proto udp dnat ip to udp dport map @wanmap"
            hairpin_post="iifname \"lan\" oifname \"lan\" ct status dnat snat ip to $wan"
        fi
        cat <<EOF
table ip natlab {
    map wanmap { type inet_service : ipv4_addr . inet_service; flags dynamic, timeout; timeout 30s; }
    $contacted_set
    chain learn { type filter hook postrouting priority srcnat + 10; policy accept;
        iifname "lan" oifname "wan" meta l4proto udp update @wanmap { udp sport timeout 30s : ct original ip saddr . ct original proto-src }
        $learn_contacted
    }
    $restrict
    chain prerouting { type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" meta l4proto udp dnat ip to udp dport map @wanmap
        $hairpin_pre
    }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
        $hairpin_post
    }
    $forward
}
EOF
        ;;
    alg)
        # The kernel assigns no helper by itself: attach the SIP helper to LAN flows to port 5060.
        cat <<EOF
table ip natlab {
    ct helper sip-udp { type "sip" protocol udp; l3proto ip; }
    ct helper sip-tcp { type "sip" protocol tcp; l3proto ip; }
    chain helpers { type filter hook prerouting priority filter; policy accept;
        iifname "lan" udp dport 5060 ct helper set "sip-udp"
        iifname "lan" tcp dport 5060 ct helper set "sip-tcp"
    }
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
    $forward
}
EOF
        ;;
    *) die "no rules for gateway $g" ;;
    esac
}

# ---------------------------------------------------------------------------------------------------------
# Commands

require_root_and_tools() {
    if [[ $EUID -ne 0 ]]; then
        echo "natlab: needs root (network namespaces)" >&2
        exit 2
    fi
    local t
    for t in ip nft sysctl; do
        command -v "$t" >/dev/null || {
            echo "natlab: $t not installed (Debian: iproute2, nftables, procps)" >&2
            exit 2
        }
    done
}

cmd_up() {
    require_root_and_tools
    if [[ -n "$(our_namespaces)" ]]; then
        echo "natlab: prefix $PREFIX is in use ($(our_namespaces | tr '\n' ' ')); run 'down' first or set NATLAB_PREFIX" >&2
        exit 4
    fi
    load_modules
    # A failure or a signal half-way leaves nothing behind.
    trap 'rc=$?; echo "natlab: up failed or interrupted (line $LINENO); tearing down" >&2; trap - ERR INT TERM; cmd_down >/dev/null 2>&1 || true; exit $((rc ? rc : 1))' ERR INT TERM
    local start=$EPOCHREALTIME

    # The internet: one router, a bridge per public network, no default route.
    local inet
    inet=$(ns_of inet)
    make_ns "$inet" router
    bridge "$inet" br-srv
    bridge "$inet" br-wan
    bridge "$inet" br-peer
    ip -n "$inet" addr add 203.0.113.1/24 dev br-srv
    ip -n "$inet" addr add 198.51.100.1/24 dev br-wan
    ip -n "$inet" addr add 192.0.2.1/24 dev br-peer

    # Server with two public addresses (RFC 5780), and a public peer.
    local server peer
    server=$(ns_of server)
    make_ns "$server" host
    veth "$inet" p-server "$server" eth0
    ip -n "$inet" link set p-server master br-srv up
    ip -n "$server" addr add "${SERVER_ADDRS[0]}/24" dev eth0
    ip -n "$server" addr add "${SERVER_ADDRS[1]}/24" dev eth0
    ip -n "$server" link set eth0 up
    ip -n "$server" route add default via 203.0.113.1

    peer=$(ns_of peer)
    make_ns "$peer" host
    veth "$inet" p-peer "$peer" eth0
    ip -n "$inet" link set p-peer master br-peer up
    ip -n "$peer" addr add "$PEER_ADDR/24" dev eth0
    ip -n "$peer" link set eth0 up
    ip -n "$peer" route add default via 192.0.2.1

    # Gateways and their LANs.
    local g i gw lanhost net
    for g in "${GATEWAYS[@]}"; do
        gw=$(ns_of "$g")
        net=$(gw_lan_net "$g")
        make_ns "$gw" router
        veth "$inet" "p-$g" "$gw" wan
        ip -n "$inet" link set "p-$g" master br-wan up
        ip -n "$gw" addr add "$(gw_wan "$g")/24" dev wan
        ip -n "$gw" link set wan up
        ip -n "$gw" route add default via 198.51.100.1
        bridge "$gw" lan
        ip -n "$gw" addr add "$net.1/24" dev lan
        for ((i = 1; i <= GW_LANS[$g]; i++)); do
            lanhost=$(ns_of "$g-lan$i")
            make_ns "$lanhost" host
            veth "$gw" "lan$i" "$lanhost" eth0
            ip -n "$gw" link set "lan$i" master lan up
            ip -n "$lanhost" addr add "$net.$((9 + i))/24" dev eth0
            ip -n "$lanhost" link set eth0 up
            ip -n "$lanhost" route add default via "$net.1"
        done
        nat_rules "$g" | ip netns exec "$gw" nft -f -
        # After the rules: they bring conntrack into the namespace, and with it these keys.
        if [[ "$g" == short ]]; then
            # A cheap router: idle UDP bindings and idle TCP connections are forgotten after 20 s.
            nsctl "$gw" net.netfilter.nf_conntrack_udp_timeout=20 net.netfilter.nf_conntrack_udp_timeout_stream=20 \
                net.netfilter.nf_conntrack_tcp_timeout_established=20
        fi
    done
    trap - ERR INT TERM
    local ms
    ms=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
    echo "natlab: up ($PREFIX, $(all_hosts | wc -l) namespaces) in ${ms} ms"
}

# Running and not a zombie (a zombie waits for its parent, which may be the caller, to reap it).
pid_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat:0:1}" != Z ]]
}

cmd_down() {
    local start=$EPOCHREALTIME ns pid
    local -a nss=() pids=()
    mapfile -t nss < <(our_namespaces)
    # Processes started in a namespace outlive the command that started them: end exactly those pids.
    for ns in "${nss[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            [[ "$pid" == "$$" ]] || pids+=("$pid")
        done
    done
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        local n alive
        for ((n = 0; n < 30; n++)); do
            alive=()
            for pid in "${pids[@]}"; do
                if pid_alive "$pid"; then alive+=("$pid"); fi
            done
            ((${#alive[@]})) || break
            sleep 0.1
        done
        if ((${#alive[@]})); then kill -KILL "${alive[@]}" 2>/dev/null || true; fi
    fi
    # Deleting a namespace deletes its interfaces and with them the veth peers and bridges.
    for ns in "${nss[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    local left
    left=$(our_namespaces)
    if [[ -n "$left" ]]; then
        echo "natlab: could not remove: $left" >&2
        exit 1
    fi
    local ms
    ms=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
    echo "natlab: down ($PREFIX, ${#nss[@]} namespaces removed, ${#pids[@]} processes ended) in ${ms} ms"
}

cmd_status() {
    local h ns pids any=0
    for h in $(all_hosts); do
        ns=$(ns_of "$h")
        if ns_present "$ns"; then
            any=1
            pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
            printf '%-16s %-22s up   pids: %s\n' "$h" "$ns" "${pids:--}"
        else
            printf '%-16s %-22s down\n' "$h" "$ns"
        fi
    done
    ((any)) && return 0
    return 1
}

host_role() {
    case "$1" in
    inet) echo router ;;
    server) echo server ;;
    peer) echo peer ;;
    *-lan*) echo lan ;;
    *) echo nat ;;
    esac
}

host_addrs() {
    local h=$1 g
    case "$h" in
    inet) echo "${INET_ADDRS[*]}" | tr ' ' , ;;
    server) echo "${SERVER_ADDRS[*]}" | tr ' ' , ;;
    peer) echo "$PEER_ADDR" ;;
    *-lan*)
        g=${h%-lan*}
        echo "$(gw_lan_net "$g").$((9 + ${h##*-lan}))"
        ;;
    *) echo "$(gw_wan "$h"),$(gw_lan_net "$h").1" ;;
    esac
}

cmd_list() {
    local h
    for h in $(all_hosts); do
        echo "$h $(ns_of "$h") $(host_role "$h") $(host_addrs "$h")"
    done
}

# One line per host: `host NAME key=value...`. LAN hosts carry their gateway's expected behaviour. The keys
# are stable; new keys may be appended.
cmd_describe_text() {
    local h g role
    echo "natlab 1 prefix=$PREFIX"
    for h in $(all_hosts); do
        role=$(host_role "$h")
        printf 'host %s ns=%s role=%s addrs=%s' "$h" "$(ns_of "$h")" "$role" "$(host_addrs "$h")"
        case "$role" in
        nat) printf ' wan=%s lan=%s.0/24' "$(gw_wan "$h")" "$(gw_lan_net "$h")" ;;
        lan)
            g=${h%-lan*}
            printf ' gateway=%s public=%s mapping=%s filtering=%s hairpin=%s lifetime=%s lifetime_stream=%s classic=%s sip_alg=%s' \
                "$g" "$(gw_wan "$g")" "${GW_MAPPING[$g]}" "${GW_FILTERING[$g]}" "${GW_HAIRPIN[$g]}" \
                "${GW_LIFETIME[$g]}" "${GW_LIFETIME_STREAM[$g]}" "${GW_CLASSIC[$g]}" "${GW_SIP_ALG[$g]}"
            ;;
        esac
        printf '\n'
    done
}

cmd_describe_json() {
    local h g role first=1 a
    printf '{"version":1,"prefix":"%s","hosts":[' "$PREFIX"
    for h in $(all_hosts); do
        role=$(host_role "$h")
        ((first)) || printf ','
        first=0
        printf '\n {"name":"%s","ns":"%s","role":"%s","addrs":[' "$h" "$(ns_of "$h")" "$role"
        a=$(host_addrs "$h")
        printf '"%s"' "${a//,/\",\"}"
        printf ']'
        case "$role" in
        nat) printf ',"wan":"%s","lan":"%s.0/24"' "$(gw_wan "$h")" "$(gw_lan_net "$h")" ;;
        lan)
            g=${h%-lan*}
            printf ',"gateway":"%s","public":"%s","expect":{"mapping":"%s","filtering":"%s","hairpin":%s,"lifetime":%s,"lifetime_stream":%s,"classic":"%s","sip_alg":%s}' \
                "$g" "$(gw_wan "$g")" "${GW_MAPPING[$g]}" "${GW_FILTERING[$g]}" \
                "$([[ ${GW_HAIRPIN[$g]} == yes ]] && echo true || echo false)" \
                "${GW_LIFETIME[$g]}" "${GW_LIFETIME_STREAM[$g]}" "${GW_CLASSIC[$g]}" \
                "$([[ ${GW_SIP_ALG[$g]} == yes ]] && echo true || echo false)"
            ;;
        esac
        printf '}'
    done
    printf '\n]}\n'
}

cmd_exec() {
    (($# >= 2)) || usage
    local h=$1
    shift
    host_exists "$h" || die "no host $h (see: natlab.sh list)"
    ns_present "$(ns_of "$h")" || die "host $h is not up (prefix $PREFIX; run: natlab.sh up)"
    exec ip netns exec "$(ns_of "$h")" "$@"
}

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 3
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
list) cmd_list ;;
describe)
    if [[ "${2:-}" == --json ]]; then cmd_describe_json; else cmd_describe_text; fi
    ;;
exec)
    shift
    cmd_exec "$@"
    ;;
*) usage ;;
esac
