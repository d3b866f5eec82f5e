//! The one stream connection of the server: STUN and TURN over TCP and TLS (RFC 8489 §6.2.2,
//! RFC 8656 §3.1, with RFC 6062's data connections) and SIP over TCP, TLS, WebSocket and secure
//! WebSocket (RFC 3261 §18.3, RFC 7118), all in a [`Pool`] driven on the owning thread's epoll.
//!
//! The pool accepts, admits (a total and a per-address cap), reads, cuts messages as the
//! protocol's core says ([`farside_turn::channel_data::stream_frame`], [`farside_sip::frame`],
//! WebSocket's frames), hands each to the shell, writes what the shell queues, and closes what
//! outstays its welcome. The limits are the same for every protocol, each configurable
//! ([`Limits`]) and counted ([`crate::telemetry::stream::StreamCounters`]):
//!
//! - a connection that has not delivered a whole message within `first_message` of its
//!   accept is closed (a slow or silent client holds no slot: Asterisk's `tcpauthtimeout`);
//! - a TLS handshake unfinished after `tls_handshake` is closed;
//! - a connection idle (nothing read or written) for `idle` is closed, unless the shell holds
//!   it: a TURN allocation rides on it, or a SIP registration (which then lives as long as its
//!   keep-alives keep the registration);
//! - a peer's pipelined messages are handled a few at a time, and none while its output
//!   queue is past half of `max_queued` (its answers wait to be read first); one that ends
//!   its side is answered before the connection closes;
//! - output stuck (a peer that does not read) for `idle` closes it, and output beyond
//!   `max_queued` closes it at once (or, for relayed data, is dropped as UDP would drop it);
//! - what breaks the framing closes it.

mod conn;
mod pool;

pub use conn::{CloseReason, Meta};
pub use pool::{After, Pool, Urgency};

use std::time::Duration;

/// What a listener serves: its protocol (and so its framing) and its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// STUN and TURN over TCP.
    StunTcp,
    /// STUN and TURN over TLS.
    StunTls,
    /// SIP over TCP.
    SipTcp,
    /// SIP over TLS.
    SipTls,
    /// SIP over WebSocket (RFC 7118).
    SipWs,
    /// SIP over secure WebSocket.
    SipWss,
}

impl Kind {
    /// Whether it runs over TLS.
    pub fn is_secure(self) -> bool {
        matches!(self, Kind::StunTls | Kind::SipTls | Kind::SipWss)
    }

    /// Whether messages come as WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(self, Kind::SipWs | Kind::SipWss)
    }

    /// Its name in logs: `tcp`, `tls`, `ws` or `wss`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::StunTcp | Kind::SipTcp => "tcp",
            Kind::StunTls | Kind::SipTls => "tls",
            Kind::SipWs => "ws",
            Kind::SipWss => "wss",
        }
    }

    /// The TURN transport of a STUN listener (RFC 8656 §3.1: TCP or TLS).
    pub fn turn_transport(self) -> farside_turn::TurnTransport {
        if self.is_secure() {
            farside_turn::TurnTransport::Tls
        } else {
            farside_turn::TurnTransport::Tcp
        }
    }

    /// The SIP transport of a SIP listener.
    pub fn sip_transport(self) -> farside_sip::nat::Transport {
        use farside_sip::nat::Transport;
        match self {
            Kind::SipTls | Kind::StunTls => Transport::Tls,
            Kind::SipWs => Transport::Ws,
            Kind::SipWss => Transport::Wss,
            Kind::SipTcp | Kind::StunTcp => Transport::Tcp,
        }
    }
}

/// The limits of one pool (one service's connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they come.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_per_ip: usize,
    /// A connection must deliver a whole message within this of its accept.
    pub first_message: Duration,
    /// A connection idle this long (or whose output is stuck this long) is closed, unless held.
    pub idle: Duration,
    /// A TLS handshake must finish within this.
    pub tls_handshake: Duration,
    /// Output bytes waiting for a peer at most.
    pub max_queued: usize,
    /// The largest message accepted (a longer one breaks the framing).
    pub max_message: usize,
}

/// A limit of [`Limits`] out of range, for the configuration to name its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitField {
    /// [`Limits::max_connections`].
    MaxConnections,
    /// [`Limits::max_per_ip`].
    MaxPerIp,
    /// [`Limits::first_message`].
    FirstMessage,
    /// [`Limits::idle`].
    Idle,
    /// [`Limits::tls_handshake`].
    TlsHandshake,
    /// [`Limits::max_queued`].
    MaxQueued,
}

impl Limits {
    /// The first limit a pool cannot work with, and why: every count and time must be at
    /// least one, and the output queue must hold two whole messages (a peer is no longer read
    /// once half of it is used, so half must hold the answer to a whole message).
    pub fn problem(&self) -> Option<(LimitField, String)> {
        let at_least_one = [
            (LimitField::MaxConnections, self.max_connections as u64, ""),
            (LimitField::MaxPerIp, self.max_per_ip as u64, ""),
            (
                LimitField::FirstMessage,
                self.first_message.as_secs(),
                " second",
            ),
            (LimitField::Idle, self.idle.as_secs(), " second"),
            (
                LimitField::TlsHandshake,
                self.tls_handshake.as_secs(),
                " second",
            ),
        ];
        if let Some((field, _, unit)) = at_least_one.into_iter().find(|(_, v, _)| *v == 0) {
            return Some((field, format!("must be at least 1{unit}")));
        }
        let least = 2 * self.max_message;
        (self.max_queued < least).then(|| {
            (
                LimitField::MaxQueued,
                format!("must hold two whole messages: at least {least}"),
            )
        })
    }
}
