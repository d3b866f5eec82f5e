//! Log lines caused by remote peers, at most once per kind for the life of the process.
//!
//! A flood of bad packets must not become a flood of log lines: the first of each kind is
//! logged with a clear meaning, the rest are only counted (see `farside_stun_dropped_total`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use farside_stun::binding::DropReason;

static DROP_LOGGED: [AtomicBool; DropReason::ALL.len()] =
    [const { AtomicBool::new(false) }; DropReason::ALL.len()];

/// Logs the first drop of each reason.
pub fn dropped(reason: DropReason, source: SocketAddr) {
    let flag = &DROP_LOGGED[reason as usize];
    // The plain load keeps the hot path free of atomic read-modify-writes once logged.
    if flag.load(Relaxed) || flag.swap(true, Relaxed) {
        return;
    }
    tracing::info!(
        "S201 dropped a message from {source}: {}; further drops of this kind are only counted \
         in farside_stun_dropped_total{{reason=\"{}\"}}",
        reason.meaning(),
        reason.as_str()
    );
}

static SEGMENTATION_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs the first time the kernel refuses a segmented send (`UDP_SEGMENT`) on any socket.
pub fn segmentation_refused(socket: &std::net::UdpSocket) {
    if SEGMENTATION_LOGGED.swap(true, Relaxed) {
        return;
    }
    let local = socket
        .local_addr()
        .map_or_else(|_| "a socket".to_string(), |a| a.to_string());
    tracing::warn!(
        "S107 the kernel refused a segmented UDP send (UDP_SEGMENT) from {local}: runs of \
         datagrams for one destination now leave one by one from that batch; nothing was lost"
    );
}

static RELAY_UNANSWERED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs the first time the RTP relay does not answer the SIP server in time (`wait`).
pub fn relay_unanswered(wait: std::time::Duration) {
    if RELAY_UNANSWERED_LOGGED.load(Relaxed) || RELAY_UNANSWERED_LOGGED.swap(true, Relaxed) {
        return;
    }
    tracing::warn!(
        "S505 the RTP relay did not answer within {wait:?}: the call's SDP passes as it came; \
         further misses are only counted in farside_sip_media_total{{result=\"passed\"}}"
    );
}

static ACCEPT_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs the first failed accept on a stream listener (out of file descriptors, most often).
pub fn accept_failed(e: &std::io::Error) {
    if ACCEPT_LOGGED.swap(true, Relaxed) {
        return;
    }
    tracing::warn!(
        "S104 a TCP accept failed: {e}; connections wait in the backlog (raise the open-file limit, or lower the connection limits)"
    );
}

static LOGIN_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs the first refused dashboard login (later ones are counted in
/// `farside_admin_login_failures_total`).
pub fn login_refused(source: std::net::IpAddr, why: &str) {
    if LOGIN_REFUSED_LOGGED.swap(true, Relaxed) {
        return;
    }
    tracing::warn!(
        "S017 dashboard login refused from {source} ({why}); further refusals are only counted in farside_admin_login_failures_total"
    );
}

static DIAL_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs the first TLS connection Farside dialled to a phone that failed its handshake (later
/// ones are counted in `farside_sip_connections_total{event="certificate_refused"}`).
pub fn dial_refused(remote: SocketAddr, why: &str) {
    if DIAL_REFUSED_LOGGED.swap(true, Relaxed) {
        tracing::debug!("S421 SIP tls connection to {remote} failed its handshake: {why}");
        return;
    }
    tracing::warn!(
        "S421 SIP tls connection to {remote} failed its handshake: {why}; calls to a phone \
         whose certificate is not accepted get 480 (see sip.tls_verify and sip.tls_ca); \
         further failures are only counted in \
         farside_sip_connections_total{{event=\"certificate_refused\"}}"
    );
}
