//! Sans-IO NAT behaviour discovery client (RFC 5780) with classic RFC 3489 type naming.
//!
//! [`Probe`] is a state machine in the str0m/quinn style: it never touches a socket, a clock
//! or a resolver. The I/O shell
//!
//! 1. creates it with [`Probe::new`] (socket 0 already bound, the server already resolved),
//! 2. sends every [`Transmit`] from [`Probe::poll_transmit`], creating local socket N the first
//!    time a transmit names it and telling the probe its address with
//!    [`Probe::local_address_of`],
//! 3. feeds each received datagram to [`Probe::handle_datagram`] with the socket it arrived
//!    on, and calls [`Probe::handle_timeout`] once [`Probe::poll_timeout`] is reached,
//! 4. prints the [`Event`]s from [`Probe::poll_event`], until [`Probe::is_done`]; then
//!    [`Probe::report`] holds the verdict.
//!
//! The tests, in order (each skipped when [`ProbeConfig`] turns it off):
//!
//! - **Test I** (RFC 5780 §4.3): a Binding request to the server's primary address gives the
//!   public address (XOR-MAPPED-ADDRESS) and the server's OTHER-ADDRESS. No answer at all means
//!   UDP is blocked or the server is down; no OTHER-ADDRESS means the server cannot tell
//!   behaviours apart and the probe ends there.
//! - **Filtering** (§4.4), run before anything is sent to the alternate address, which would
//!   open the NAT's filter for it: CHANGE-REQUEST "change IP and port" (test II) and "change
//!   port" (test III) sent together; see [`filtering`].
//! - **Hairpinning** (§4.5), alongside the filtering tests: sockets 0 and 1 send Binding
//!   requests to each other's public address; see [`hairpinning`].
//! - **Mapping** (§4.3): tests II and III to the alternate address; see [`mapping`].
//! - **Binding lifetime** (§4.6), only when asked, as it takes minutes; see [`lifetime`].
//!
//! Every request is retransmitted as RFC 8489 §6.2.1 says (see [`transaction`]) and every
//! answer is matched by transaction id.

#![forbid(unsafe_code)]

mod config;
pub mod filtering;
pub mod hairpinning;
pub mod lifetime;
pub mod mapping;
mod message;
mod probe;
mod progress;
mod report;
mod rng;
pub mod transaction;

use std::net::SocketAddr;

pub use config::{ConfigError, LifetimeConfig, ProbeConfig};
pub use probe::Probe;
pub use progress::{Event, Progress, Test};
pub use report::{Behaviour, ClassicType, Lifetime, Report};

/// A local UDP socket of the probe. Socket 0 is the main one, given to [`Probe::new`]; the
/// shell creates socket N (bound to socket 0's IP, an ephemeral port) the first time a
/// [`Transmit`] names it. Hairpinning uses socket 1; each binding lifetime trial a fresh one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

impl SocketId {
    /// The main socket, whose NAT behaviour the report describes.
    pub const MAIN: SocketId = SocketId(0);
    /// The second socket of the hairpinning test.
    pub const HAIRPIN: SocketId = SocketId(1);
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket to send it from.
    pub from: SocketId,
    /// The destination.
    pub to: SocketAddr,
    /// The UDP payload: one STUN message.
    pub payload: Vec<u8>,
}
