//! A sans-IO TURN server (RFC 8656, with RFC 6156's IPv6): allocations, permissions,
//! channels, Send/Data indications and ChannelData, long-term credentials (RFC 8489 §9.2:
//! MD5 and SHA-256, USERHASH, nonce cookie) and coturn-compatible ephemeral ("REST")
//! credentials, a relay-peer policy and quotas; and TCP allocations (RFC 6062: Connect,
//! ConnectionBind, ConnectionAttempt), whose bytes the shell splices.
//!
//! [`TurnServer`] never touches a socket or a clock. The I/O shell hands it what arrives on
//! the client-facing sockets ([`TurnServer::handle_client`]) and on relay sockets
//! ([`TurnServer::handle_peer`]), with the time; it answers with at most one datagram to
//! send ([`Transmit`]). Relay sockets are bound by the shell through the [`RelayPorts`] trait,
//! which tests implement without sockets.

mod allocation;
pub mod channel_data;
mod config;
mod credentials;
mod nonce;
mod outcome;
mod quotas;
mod server;

pub use allocation::{AllocationSummary, FiveTuple};
pub use config::TurnConfig;
pub use credentials::{Credentials, UserKeys, rest_password};
/// Which peers may be relayed to: `farside-peers`, shared with the RTP relay.
pub use farside_peers::{Cidr, PeerPolicy};
pub use farside_stun::attributes::ConnectionId;
pub use outcome::{
    Dropped, Handled, Notice, Refusal, RelayError, RelayPorts, Transmit, TurnTransport,
};
pub use quotas::Quotas;
pub use server::TurnServer;
