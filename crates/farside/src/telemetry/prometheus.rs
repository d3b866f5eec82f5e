//! The Prometheus text exposition format of the counters.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use farside_stun::binding::DropReason;
use farside_turn::{Dropped, Refusal};

use super::Metrics;
use super::rtp::RtpCounters;
use super::sip::SipCounters;
use super::stream::StreamCounters;
use super::stun::StunCounters;
use super::turn::{TurnCounters, TurnMetrics};
use crate::runtime::lock::lock;

/// The Prometheus text exposition format of everything `m` holds.
pub(super) fn render(m: &Metrics) -> String {
    let mut all: Vec<(&'static str, Arc<StunCounters>)> = lock(&m.workers)
        .iter()
        .map(|c| ("udp", Arc::clone(c)))
        .collect();
    all.push(("tcp", Arc::clone(&m.tcp_stun)));
    let sum = |f: &dyn Fn(&StunCounters) -> &AtomicU64, only: Option<&str>| -> u64 {
        all.iter()
            .filter(|(t, _)| only.is_none_or(|o| o == *t))
            .map(|(_, c)| f(c).load(Relaxed))
            .sum()
    };
    let mut s = String::with_capacity(4096);
    header(
        &mut s,
        "farside_stun_requests_total",
        "counter",
        "STUN Binding requests answered, by transport and client kind.",
    );
    for (ti, t) in ["udp", "tcp"].iter().enumerate() {
        for (ci, c) in ["rfc5389", "rfc3489"].iter().enumerate() {
            let v = sum(&|x| &x.requests[ti][ci], None);
            let _ = writeln!(
                s,
                "farside_stun_requests_total{{transport=\"{t}\",client=\"{c}\"}} {v}"
            );
        }
    }
    header(
        &mut s,
        "farside_stun_responses_total",
        "counter",
        "STUN responses sent, by class.",
    );
    let _ = writeln!(
        s,
        "farside_stun_responses_total{{class=\"success\"}} {}",
        sum(&|x| &x.success, None)
    );
    let errors = sum(&|x| &x.error_400, None) + sum(&|x| &x.error_420, None);
    let _ = writeln!(
        s,
        "farside_stun_responses_total{{class=\"error\"}} {errors}"
    );
    header(
        &mut s,
        "farside_stun_errors_total",
        "counter",
        "STUN error responses sent, by error code.",
    );
    let _ = writeln!(
        s,
        "farside_stun_errors_total{{code=\"400\"}} {}",
        sum(&|x| &x.error_400, None)
    );
    let _ = writeln!(
        s,
        "farside_stun_errors_total{{code=\"420\"}} {}",
        sum(&|x| &x.error_420, None)
    );
    header(
        &mut s,
        "farside_stun_changed_responses_total",
        "counter",
        "Responses sent from another address or port on request (CHANGE-REQUEST).",
    );
    let _ = writeln!(
        s,
        "farside_stun_changed_responses_total {}",
        sum(&|x| &x.changed, None)
    );
    header(
        &mut s,
        "farside_stun_dropped_total",
        "counter",
        "Messages dropped without an answer, by reason.",
    );
    for r in DropReason::ALL {
        let v = sum(&|x| &x.dropped[r as usize], None);
        let _ = writeln!(
            s,
            "farside_stun_dropped_total{{reason=\"{}\"}} {v}",
            r.as_str()
        );
    }
    header(
        &mut s,
        "farside_stun_send_failures_total",
        "counter",
        "Responses the kernel refused to send.",
    );
    let _ = writeln!(
        s,
        "farside_stun_send_failures_total {}",
        sum(&|x| &x.send_failures, None)
    );

    render_streams(
        &mut s,
        "farside_stun_tcp_connections",
        "STUN and TURN connections over TCP and TLS",
        &m.stun_streams,
    );

    if let Some(book) = lock(&m.partners).as_ref() {
        header(
            &mut s,
            "farside_stun_partner_messages_total",
            "counter",
            "Partner mode: change-IP requests forwarded, answered for a partner, heartbeats sent and heard.",
        );
        for (what, v) in [
            ("forwarded", sum(&|x| &x.partner_forwards, None)),
            ("answered", sum(&|x| &x.partner_answers, None)),
            ("hello_sent", sum(&|x| &x.partner_hellos_sent, None)),
            ("hello_heard", sum(&|x| &x.partner_hellos_heard, None)),
        ] {
            let _ = writeln!(
                s,
                "farside_stun_partner_messages_total{{event=\"{what}\"}} {v}"
            );
        }
        header(
            &mut s,
            "farside_stun_partner_up",
            "gauge",
            "Partner mode: 1 if the partner greeted us within three heartbeats.",
        );
        for (ip, alive) in book.status(crate::runtime::clock::now()) {
            let _ = writeln!(
                s,
                "farside_stun_partner_up{{partner=\"{ip}\"}} {}",
                u8::from(alive)
            );
        }
    }

    header(
        &mut s,
        "farside_admin_refused_total",
        "counter",
        "Admin API requests refused for a missing or wrong token.",
    );
    let _ = writeln!(
        s,
        "farside_admin_refused_total {}",
        m.admin_refused.load(Relaxed)
    );
    header(
        &mut s,
        "farside_admin_login_failures_total",
        "counter",
        "Dashboard logins refused: a wrong password, or a source locked out after too many.",
    );
    let _ = writeln!(
        s,
        "farside_admin_login_failures_total {}",
        m.admin_login_failures.load(Relaxed)
    );
    if let Some(t) = lock(&m.turn).as_ref() {
        render_turn(&mut s, t);
    }
    if let Some(c) = lock(&m.sip).as_ref() {
        render_sip(&mut s, c);
    }
    if let Some(c) = lock(&m.rtp).as_ref() {
        render_rtp(&mut s, c);
    }
    if let Some(c) = lock(&m.sip_streams).as_ref() {
        render_streams(
            &mut s,
            "farside_sip_connections",
            "SIP connections over TCP, TLS and WebSocket",
            c,
        );
    }

    let stats = m.kernel_socket_stats();
    header(
        &mut s,
        "farside_udp_kernel_drops_total",
        "counter",
        "Datagrams the kernel dropped on our UDP sockets (SO_MEMINFO), by local address.",
    );
    for (addr, st) in &stats {
        let _ = writeln!(
            s,
            "farside_udp_kernel_drops_total{{local=\"{addr}\"}} {}",
            st.drops
        );
    }
    header(
        &mut s,
        "farside_udp_receive_buffer_bytes",
        "gauge",
        "Effective kernel receive buffer of each UDP socket.",
    );
    for (addr, st) in &stats {
        let _ = writeln!(
            s,
            "farside_udp_receive_buffer_bytes{{local=\"{addr}\"}} {}",
            st.recv_buffer
        );
    }
    s
}

fn render_turn(s: &mut String, m: &TurnMetrics) {
    let workers = lock(&m.workers).clone();
    let sum = |f: &dyn Fn(&TurnCounters) -> u64| -> u64 { workers.iter().map(|w| f(w)).sum() };
    header(
        s,
        "farside_turn_allocations",
        "gauge",
        "TURN allocations alive now.",
    );
    let live = sum(&|w| w.allocations.load(Relaxed) as u64);
    let _ = writeln!(s, "farside_turn_allocations {live}");
    header(
        s,
        "farside_turn_responses_total",
        "counter",
        "TURN responses: successes, and refusals by reason.",
    );
    let _ = writeln!(
        s,
        "farside_turn_responses_total{{result=\"success\"}} {}",
        sum(&|w| w.answered.load(Relaxed))
    );
    for r in Refusal::ALL {
        let _ = writeln!(
            s,
            "farside_turn_responses_total{{result=\"{}\",code=\"{}\"}} {}",
            r.as_str(),
            r.code(),
            sum(&|w| w.refused[r as usize].load(Relaxed))
        );
    }
    header(
        s,
        "farside_turn_dropped_total",
        "counter",
        "TURN messages dropped without an answer, by reason.",
    );
    for d in Dropped::ALL {
        let _ = writeln!(
            s,
            "farside_turn_dropped_total{{reason=\"{}\"}} {}",
            d.as_str(),
            sum(&|w| w.dropped[d as usize].load(Relaxed))
        );
    }
    let directions = [
        (
            "to_peer",
            sum(&|w| w.to_peer.load(Relaxed)),
            sum(&|w| w.to_peer_bytes.load(Relaxed)),
        ),
        (
            "to_client",
            sum(&|w| w.to_client.load(Relaxed)),
            sum(&|w| w.to_client_bytes.load(Relaxed)),
        ),
    ];
    header(
        s,
        "farside_turn_relayed_packets_total",
        "counter",
        "Datagrams relayed, by direction.",
    );
    for (dir, packets, _) in directions {
        let _ = writeln!(
            s,
            "farside_turn_relayed_packets_total{{direction=\"{dir}\"}} {packets}"
        );
    }
    header(
        s,
        "farside_turn_relayed_bytes_total",
        "counter",
        "Payload bytes relayed, by direction.",
    );
    for (dir, _, bytes) in directions {
        let _ = writeln!(
            s,
            "farside_turn_relayed_bytes_total{{direction=\"{dir}\"}} {bytes}"
        );
    }
    header(
        s,
        "farside_turn_send_failures_total",
        "counter",
        "Relayed datagrams the kernel refused to send.",
    );
    let _ = writeln!(
        s,
        "farside_turn_send_failures_total {}",
        sum(&|w| w.send_failures.load(Relaxed))
    );
}

fn render_rtp(s: &mut String, c: &RtpCounters) {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    header(
        s,
        "farside_rtp_calls",
        "gauge",
        "Calls the RTP relay holds now.",
    );
    let _ = writeln!(s, "farside_rtp_calls {}", get(&c.calls));
    header(
        s,
        "farside_rtp_port_pairs",
        "gauge",
        "Relay port pairs (RTP and RTCP) bound now.",
    );
    let _ = writeln!(s, "farside_rtp_port_pairs {}", get(&c.port_pairs));
    header(
        s,
        "farside_rtp_port_pairs_free",
        "gauge",
        "Relay port pairs of rtp.ports not bound now (free, or held by another program).",
    );
    let _ = writeln!(s, "farside_rtp_port_pairs_free {}", get(&c.port_pairs_free));
    histogram(
        s,
        "farside_rtp_stream_loss_ratio",
        "Ended calls, each side: the share of its RTP lost on the way to the relay (from sequence numbers).",
        &super::rtp::LOSS_BUCKETS,
        &c.loss,
    );
    histogram(
        s,
        "farside_rtp_stream_jitter_seconds",
        "Ended calls, each side: its RTP's interarrival jitter at the end (RFC 3550), at the relay.",
        &super::rtp::JITTER_BUCKETS,
        &c.jitter,
    );
    header(
        s,
        "farside_rtp_packets_total",
        "counter",
        "Packets at relay ports: relayed, or dropped because they came from a host the signalling did not name (foreign_source), the other side had no address yet (no_destination), no call owns the port (no_stream), the other side's address is refused by rtp.allowed_peers / rtp.denied_peers (denied_peer), dropped by the kernel at the port's full receive buffer (overflow: the relay fell behind; read from the kernel once a second), or refused by the kernel when sent on (send_failed).",
    );
    for (label, n) in [
        ("relayed", &c.relayed),
        ("foreign_source", &c.foreign_source),
        ("no_destination", &c.no_destination),
        ("no_stream", &c.no_stream),
        ("denied_peer", &c.denied_peer),
        ("overflow", &c.overflow),
        ("send_failed", &c.send_failed),
    ] {
        let _ = writeln!(
            s,
            "farside_rtp_packets_total{{result=\"{label}\"}} {}",
            get(n)
        );
    }
    header(
        s,
        "farside_rtp_relayed_bytes_total",
        "counter",
        "Bytes of the packets relayed.",
    );
    let _ = writeln!(
        s,
        "farside_rtp_relayed_bytes_total {}",
        get(&c.relayed_bytes)
    );
    header(
        s,
        "farside_rtp_calls_ended_total",
        "counter",
        "Calls ended: deleted by the signalling, no media after the answer, silence, the final limit.",
    );
    for (label, n) in ["deleted", "no_media", "silence", "final"]
        .iter()
        .zip(&c.ended)
    {
        let _ = writeln!(
            s,
            "farside_rtp_calls_ended_total{{reason=\"{label}\"}} {}",
            get(n)
        );
    }
    header(
        s,
        "farside_rtp_ng_requests_total",
        "counter",
        "ng control requests: answered with success (ok), with an error (refused), not understood (malformed).",
    );
    for (label, n) in ["ok", "refused", "malformed"].iter().zip(&c.ng) {
        let _ = writeln!(
            s,
            "farside_rtp_ng_requests_total{{result=\"{label}\"}} {}",
            get(n)
        );
    }
    header(
        s,
        "farside_rtp_ng_unknown_flags_total",
        "counter",
        "Flags of ng requests the relay tolerates without acting on them.",
    );
    let _ = writeln!(
        s,
        "farside_rtp_ng_unknown_flags_total {}",
        get(&c.ng_unknown_flags)
    );
}

fn render_sip(s: &mut String, c: &SipCounters) {
    use farside_sip::server::MethodKind;
    header(
        s,
        "farside_sip_requests_total",
        "counter",
        "SIP requests received, by method.",
    );
    for (i, (_, label)) in MethodKind::ALL.iter().enumerate() {
        let n = c.requests[i].load(Relaxed);
        let _ = writeln!(s, "farside_sip_requests_total{{method=\"{label}\"}} {n}");
    }
    header(
        s,
        "farside_sip_register_total",
        "counter",
        "REGISTER outcomes: registered (200), challenged (401), stale (401 stale=true, also counted as challenged), auth_failed (401 after wrong credentials), rate_limited (dropped: too many failures from the source), refused (other 4xx/5xx to a REGISTER; every refusal by code is farside_sip_refusals_total), store_unavailable (500 instead of 2xx: the store took no writes).",
    );
    for (label, v) in [
        ("registered", &c.registered),
        ("challenged", &c.challenged),
        ("stale", &c.stale),
        ("auth_failed", &c.auth_failures),
        ("rate_limited", &c.auth_rate_limited),
        ("refused", &c.refused),
        ("store_unavailable", &c.store_refused),
    ] {
        let _ = writeln!(
            s,
            "farside_sip_register_total{{outcome=\"{label}\"}} {}",
            v.load(Relaxed)
        );
    }
    header(
        s,
        "farside_sip_nat_tests_total",
        "counter",
        "Requests on which each NAT test fired (Kamailio's nat_uac_test bits).",
    );
    for (i, (_, label)) in farside_sip::nat::NatTests::ALL.iter().enumerate() {
        let n = c.nat[i].load(Relaxed);
        let _ = writeln!(s, "farside_sip_nat_tests_total{{test=\"{label}\"}} {n}");
    }
    header(
        s,
        "farside_sip_dropped_total",
        "counter",
        "SIP messages dropped, by reason.",
    );
    for (label, v) in [
        ("malformed", &c.malformed),
        ("response", &c.responses_dropped),
        ("no_flow", &c.no_flow),
        ("refusal_rate_limited", &c.refusals_rate_limited),
    ] {
        let _ = writeln!(
            s,
            "farside_sip_dropped_total{{reason=\"{label}\"}} {}",
            v.load(Relaxed)
        );
    }
    header(
        s,
        "farside_sip_alg_suspected_total",
        "counter",
        "Phones (source addresses) whose first request looked rewritten by a SIP ALG on its way (S424; their requests count as nat_tests alg_suspected).",
    );
    let _ = writeln!(
        s,
        "farside_sip_alg_suspected_total {}",
        c.alg_suspected.load(Relaxed)
    );
    header(
        s,
        "farside_sip_alg_calls_total",
        "counter",
        "Call sides (caller or callee) with a SIP ALG suspected: the caller's first INVITE, or the callee's answer, came from a suspected source.",
    );
    let _ = writeln!(
        s,
        "farside_sip_alg_calls_total {}",
        c.alg_calls.load(Relaxed)
    );
    header(
        s,
        "farside_sip_mirrored_total",
        "counter",
        "Requests the mirror service (sip.mirror_user) answered with what arrived.",
    );
    let _ = writeln!(s, "farside_sip_mirrored_total {}", c.mirrored.load(Relaxed));
    header(
        s,
        "farside_sip_echo_calls_total",
        "counter",
        "Calls to the echo service (sip.echo_user) that began: their media came back through the RTP relay.",
    );
    let _ = writeln!(
        s,
        "farside_sip_echo_calls_total {}",
        c.echo_calls.load(Relaxed)
    );
    header(
        s,
        "farside_sip_send_failures_total",
        "counter",
        "SIP messages over UDP the kernel refused to send (a full send buffer, an unreachable destination).",
    );
    let _ = writeln!(
        s,
        "farside_sip_send_failures_total {}",
        c.send_failures.load(Relaxed)
    );
    header(
        s,
        "farside_sip_keepalives_total",
        "counter",
        "Keep-alives received on SIP ports: STUN Binding requests answered, CRLF or zero bytes.",
    );
    let _ = writeln!(
        s,
        "farside_sip_keepalives_total{{kind=\"stun\"}} {}",
        c.stun.load(Relaxed)
    );
    let _ = writeln!(
        s,
        "farside_sip_keepalives_total{{kind=\"crlf\"}} {}",
        c.keepalives.load(Relaxed)
    );
    header(
        s,
        "farside_sip_forwarded_total",
        "counter",
        "Requests and responses the proxy sent on.",
    );
    let _ = writeln!(
        s,
        "farside_sip_forwarded_total {}",
        c.forwarded.load(Relaxed)
    );
    header(
        s,
        "farside_sip_keepalive_total",
        "counter",
        "Keep-alives: pings sent, SIP pings answered, SIP pings missed (failed), bindings dropped as unreachable.",
    );
    for (label, v) in [
        ("sent", &c.pings_sent),
        ("answered", &c.pings_answered),
        ("missed", &c.pings_missed),
        ("unreachable", &c.unreachable),
    ] {
        let _ = writeln!(
            s,
            "farside_sip_keepalive_total{{event=\"{label}\"}} {}",
            v.load(Relaxed)
        );
    }
    header(
        s,
        "farside_sip_bindings",
        "gauge",
        "Registered contacts alive now.",
    );
    let _ = writeln!(s, "farside_sip_bindings {}", c.bindings.load(Relaxed));
    header(
        s,
        "farside_sip_refusals_total",
        "counter",
        "Error responses Farside sent itself, by status code (\"other\" for the rest).",
    );
    for (i, v) in c.refusals.iter().enumerate() {
        let code = super::sip::REFUSAL_CODES
            .get(i)
            .map_or_else(|| "other".to_string(), u16::to_string);
        let _ = writeln!(
            s,
            "farside_sip_refusals_total{{code=\"{code}\"}} {}",
            v.load(Relaxed)
        );
    }
    header(
        s,
        "farside_sip_dialogs_total",
        "counter",
        "Dialogs through the proxy: started (2xx to INVITE), ended (2xx to BYE).",
    );
    for (label, v) in [("started", &c.dialogs_started), ("ended", &c.dialogs_ended)] {
        let _ = writeln!(
            s,
            "farside_sip_dialogs_total{{event=\"{label}\"}} {}",
            v.load(Relaxed)
        );
    }
    header(
        s,
        "farside_sip_media_total",
        "counter",
        "SDP of relayed calls handed to the RTP relay: offers and answers rewritten, or passed as they came (the relay refused or did not answer), and calls deleted.",
    );
    for ((step, result), v) in super::sip::MEDIA_STEPS.iter().zip(&c.media) {
        let _ = writeln!(
            s,
            "farside_sip_media_total{{step=\"{step}\",result=\"{result}\"}} {}",
            v.load(Relaxed)
        );
    }
    header(
        s,
        "farside_sip_dialogs",
        "gauge",
        "Dialogs established and not ended (forgotten after 12 h or beyond 100000).",
    );
    let _ = writeln!(s, "farside_sip_dialogs {}", c.dialogs.load(Relaxed));
    header(
        s,
        "farside_sip_connections",
        "gauge",
        "SIP connections (TCP, TLS, WebSocket) open now.",
    );
    let _ = writeln!(s, "farside_sip_connections {}", c.connections.load(Relaxed));
}

/// A pool's counters: `{prefix}_total{event}` and `{prefix}_open` (SIP's open gauge is the
/// older `farside_sip_connections`).
fn render_streams(s: &mut String, prefix: &str, what: &str, c: &StreamCounters) {
    let total = format!("{prefix}_total");
    header(
        s,
        &total,
        "counter",
        &format!(
            "{what}, by what became of them (per_ip_limit: the refusals at the per-address limit, part of refused)."
        ),
    );
    for (event, n) in c.events() {
        let _ = writeln!(s, "{total}{{event=\"{event}\"}} {}", n.load(Relaxed));
    }
    let open = format!("{prefix}_open");
    header(s, &open, "gauge", &format!("{what} open now."));
    let _ = writeln!(s, "{open} {}", c.open.load(Relaxed));
}

/// A histogram in Prometheus's text form: cumulative `_bucket`s, `_sum` and `_count`.
fn histogram<const N: usize>(
    s: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64; N],
    h: &super::rtp::Histogram<N>,
) {
    header(s, name, "histogram", help);
    let mut total = 0;
    for (bound, n) in bounds.iter().zip(&h.buckets) {
        total += n.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"{bound}\"}} {total}");
    }
    total += h.above.load(Relaxed);
    let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let sum = h.sum_micro.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(s, "{name}_sum {sum}\n{name}_count {total}");
}

fn header(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
