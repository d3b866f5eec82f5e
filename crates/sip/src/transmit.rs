//! What the cores ask the shell to send.

use std::net::SocketAddr;

use crate::nat::Transport;
use crate::proxy::Action;

/// One message to send: over UDP from the socket at `from` to `to`, or over the connection
/// whose far end is `to` (a stream's `from` is the listener it came in at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The message (or a keep-alive's bytes).
    pub bytes: Vec<u8>,
    /// Over which transport.
    pub transport: Transport,
    /// Farside's address to send from.
    pub from: SocketAddr,
    /// The peer.
    pub to: SocketAddr,
}

impl Transmit {
    /// The transmit a forwarding action sends, if it is one.
    pub fn of(action: Action) -> Option<Transmit> {
        match action {
            Action::Forward {
                bytes,
                transport,
                from,
                to,
            } => Some(Transmit {
                bytes,
                transport,
                from,
                to,
            }),
            _ => None,
        }
    }
}
