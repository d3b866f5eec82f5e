//! TCP allocations (RFC 6062): Connect, ConnectionBind and ConnectionAttempt, and the life of
//! each connection with a peer. The bytes themselves never pass through here: once a client
//! data connection is bound, the shell splices it to its peer connection.

use std::net::SocketAddr;
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::{ConnectionId, XorPeerAddress};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};

use super::{Auth, Step, TurnServer};
use crate::allocation::FiveTuple;
use crate::outcome::{Dropped, Handled, Notice, Refusal, Transmit};

/// A Connect gives up after this long (RFC 6062 §5.2: at least 30 s), and a peer connection
/// waits this long for its ConnectionBind (§5.3, §5.4).
pub(crate) const TCP_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection between an allocation's relayed address and a peer.
#[derive(Debug)]
pub(crate) struct TcpConnection {
    /// The allocation's control connection.
    control: FiveTuple,
    peer: SocketAddr,
    state: TcpState,
    since: Timestamp,
}

/// Why an allocation may not have another connection.
enum NoRoom {
    /// One with that peer exists.
    Taken,
    /// It has as many as it may.
    Full,
}
use NoRoom::{Full, Taken};

#[derive(Debug)]
enum TcpState {
    /// The server is connecting to the peer for this Connect request, to be answered with the
    /// key it was authenticated with.
    Connecting(TransactionId, Box<Auth>),
    /// Connected; waiting for the client's ConnectionBind.
    Pending,
    /// Spliced to a client data connection.
    Bound,
}

impl TurnServer {
    /// Connect (RFC 6062 §5.2), on the control connection of a TCP allocation.
    pub(super) fn connect(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        out: &mut [u8],
    ) -> Step<Handled> {
        if !self.allocations.get(&five).is_some_and(|a| a.tcp) {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        }
        let Some(Ok(XorPeerAddress(peer))) = msg.attribute::<XorPeerAddress>() else {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        };
        self.check_peer(msg, five, auth, peer, out)?;
        if !self.config.peer_policy.permits_to(peer) {
            return Err(self.refused(msg, five, auth, Refusal::PeerForbidden, out));
        }
        match self.room_for(five, peer) {
            Err(Taken) => {
                return Err(self.refused(msg, five, auth, Refusal::ConnectionAlreadyExists, out));
            }
            Err(Full) => {
                return Err(self.refused(msg, five, auth, Refusal::InsufficientCapacity, out));
            }
            Ok(()) => {}
        }
        let Some(relayed) = self
            .allocations
            .get(&five)
            .and_then(|a| a.relayed_for(peer.ip()))
        else {
            return Err(self.refused(msg, five, auth, Refusal::PeerAddressFamilyMismatch, out));
        };
        let id = self.new_connection_id();
        self.tcp_connections.insert(
            id,
            TcpConnection {
                control: five,
                peer,
                state: TcpState::Connecting(msg.transaction_id(), Box::new(auth.clone())),
                since: now,
            },
        );
        Ok(Handled::Connect { id, relayed, peer })
    }

    /// The shell's TCP connection for Connect `id` is up (`connected`) or failed. Returns the
    /// Connect's answer for the control connection, or `None` if nobody waits for it any
    /// more (the shell then closes the connection).
    pub fn peer_connected(
        &mut self,
        now: Timestamp,
        id: ConnectionId,
        connected: bool,
        out: &mut [u8],
    ) -> Option<Handled> {
        let c = self.tcp_connections.get_mut(&id)?;
        if !matches!(c.state, TcpState::Connecting(..)) {
            return None;
        }
        let TcpState::Connecting(tid, auth) = std::mem::replace(&mut c.state, TcpState::Pending)
        else {
            return None;
        };
        c.since = now;
        let control = c.control;
        let to = Transmit {
            len: 0,
            from: control.server,
            to: control.client,
        };
        if connected {
            let len = self.connect_answer(tid, &auth, None, Some(id), out);
            match len {
                Some(len) => Some(Handled::Answered(Transmit { len, ..to })),
                None => {
                    self.tcp_connections.remove(&id);
                    Some(Handled::Dropped(Dropped::NoRoom))
                }
            }
        } else {
            self.tcp_connections.remove(&id);
            let r = Refusal::ConnectionTimeoutOrFailure;
            self.connect_answer(tid, &auth, Some(r), None, out)
                .map(|len| Handled::Refused(Transmit { len, ..to }, r))
        }
    }

    /// A peer connected to the relayed address `relayed` (RFC 6062 §5.3). If the allocation
    /// lets it in, returns its new id and the ConnectionAttempt indication for the control
    /// connection; otherwise the shell closes it.
    pub fn peer_connection(
        &mut self,
        now: Timestamp,
        relayed: SocketAddr,
        peer: SocketAddr,
        out: &mut [u8],
    ) -> Result<(ConnectionId, Transmit), Dropped> {
        let five = *self.by_relayed.get(&relayed).ok_or(Dropped::NoAllocation)?;
        let a = self
            .allocations
            .get(&five)
            .filter(|a| a.tcp && a.expires > now)
            .ok_or(Dropped::NoAllocation)?;
        if !a.has_permission(peer.ip(), now) || !self.config.peer_policy.permits(peer.ip()) {
            return Err(Dropped::PeerConnectionRefused);
        }
        self.room_for(five, peer)
            .map_err(|_| Dropped::PeerConnectionRefused)?;
        let id = self.new_connection_id();
        self.indications = self.indications.wrapping_add(1);
        let len = connection_attempt(self, id, peer, out).ok_or(Dropped::NoRoom)?;
        self.tcp_connections.insert(
            id,
            TcpConnection {
                control: five,
                peer,
                state: TcpState::Pending,
                since: now,
            },
        );
        Ok((
            id,
            Transmit {
                len,
                from: five.server,
                to: five.client,
            },
        ))
    }

    /// ConnectionBind (RFC 6062 §5.4), on a new connection from the client.
    pub(super) fn connection_bind(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        out: &mut [u8],
    ) -> Step<Handled> {
        // A data connection is a fresh TCP or TLS connection, never one with an allocation.
        if !five.transport.is_stream() || self.allocations.contains_key(&five) {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        }
        let Some(Ok(id)) = msg.attribute::<ConnectionId>() else {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        };
        let Some(c) = self
            .tcp_connections
            .get(&id)
            .filter(|c| matches!(c.state, TcpState::Pending))
        else {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        };
        // The data connection must be the allocation owner's. Another user's bind is told
        // no more than an unknown id's, so ids cannot be probed for.
        let owner = self.allocations.get(&c.control).is_some_and(|a| {
            a.username == auth.username && a.realm == auth.realm && a.expires > now
        });
        if !owner {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        }
        match self.success(msg, five, auth, out, |_| Some(()))? {
            Handled::Answered(t) => {
                if let Some(c) = self.tcp_connections.get_mut(&id) {
                    c.state = TcpState::Bound;
                }
                Ok(Handled::Bound(t, id))
            }
            other => Ok(other),
        }
    }

    /// The shell closed peer connection `id` (or its client data connection): forget it.
    pub fn tcp_connection_closed(&mut self, id: ConnectionId) {
        self.tcp_connections.remove(&id);
    }

    /// What the server decided since the last call: connections to close and answers to send
    /// (a Connect that timed out). Call after [`TurnServer::expire`] and after anything that
    /// may remove an allocation.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Live TCP connections with peers (connecting, waiting for a bind, or bound).
    pub fn tcp_connection_count(&self) -> usize {
        self.tcp_connections.len()
    }

    /// Connects that took too long get 447; peer connections nobody bound in time are closed.
    pub(super) fn expire_tcp(&mut self, now: Timestamp) {
        let late: Vec<ConnectionId> = self
            .tcp_connections
            .iter()
            .filter(|(_, c)| {
                !matches!(c.state, TcpState::Bound) && now.duration_since(c.since) >= TCP_TIMEOUT
            })
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let Some(c) = self.tcp_connections.remove(&id) else {
                continue;
            };
            self.notices.push(Notice::Close(id));
            if let TcpState::Connecting(tid, auth) = c.state {
                // Room for the longest SOFTWARE (127 characters of up to 4 bytes).
                let mut buf = [0u8; 1024];
                let r = Refusal::ConnectionTimeoutOrFailure;
                if let Some(len) = self.connect_answer(tid, &auth, Some(r), None, &mut buf) {
                    self.notices.push(Notice::Send {
                        from: c.control.server,
                        to: c.control.client,
                        bytes: buf[..len].to_vec(),
                    });
                }
            }
        }
    }

    /// The allocation of `control` is gone: so are its connections with peers.
    pub(super) fn close_tcp_connections(&mut self, control: &FiveTuple) {
        let notices = &mut self.notices;
        self.tcp_connections.retain(|id, c| {
            let keep = c.control != *control;
            if !keep {
                notices.push(Notice::Close(*id));
            }
            keep
        });
    }

    /// Whether the allocation of `control` may have another connection, with `peer`: one per
    /// peer address (RFC 6062 §5.2), `max_tcp_connections` in all.
    fn room_for(&self, control: FiveTuple, peer: SocketAddr) -> Result<(), NoRoom> {
        let mut count = 0;
        for c in self
            .tcp_connections
            .values()
            .filter(|c| c.control == control)
        {
            if c.peer == peer {
                return Err(Taken);
            }
            count += 1;
        }
        if count >= self.config.max_tcp_connections {
            return Err(Full);
        }
        Ok(())
    }

    /// A Connect's deferred answer: success with CONNECTION-ID, or the refusal.
    fn connect_answer(
        &self,
        tid: TransactionId,
        auth: &Auth,
        refusal: Option<Refusal>,
        id: Option<ConnectionId>,
        out: &mut [u8],
    ) -> Option<usize> {
        let class = match refusal {
            Some(_) => Class::ErrorResponse,
            None => Class::SuccessResponse,
        };
        let mut b = MessageBuilder::new(
            out,
            MessageType::new(class, Method::CONNECT),
            Header::new(tid),
        )
        .ok()?;
        if let Some(r) = refusal {
            b.add(&farside_stun::attributes::ErrorCode {
                code: r.code(),
                reason: r.reason(),
            })
            .ok()?;
        }
        if let Some(id) = id {
            b.add(&id).ok()?;
        }
        self.finish(b, Some(auth)).ok()
    }

    /// A fresh identifier, unique among live connections (RFC 6062 §6.2.1). A counter run
    /// through a bijection of the 32-bit numbers keyed by the server's secret: unique until it
    /// wraps, and not the next integer after one a client saw.
    fn new_connection_id(&mut self) -> ConnectionId {
        loop {
            self.next_connection = self.next_connection.wrapping_add(1);
            let mixed = self.next_connection.wrapping_mul(0x9E37_79B1) ^ self.connection_key;
            let id = ConnectionId(mixed.rotate_left(13).wrapping_mul(0x85EB_CA6B));
            if id.0 != 0 && !self.tcp_connections.contains_key(&id) {
                return id;
            }
        }
    }
}

/// ConnectionAttempt (RFC 6062 §5.3): CONNECTION-ID and XOR-PEER-ADDRESS, no integrity.
fn connection_attempt(
    server: &TurnServer,
    id: ConnectionId,
    peer: SocketAddr,
    out: &mut [u8],
) -> Option<usize> {
    let mut tid = [0u8; 12];
    tid[4..].copy_from_slice(&server.indications.to_be_bytes());
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(Class::Indication, Method::CONNECTION_ATTEMPT),
        Header::new(TransactionId(tid)),
    )
    .ok()?;
    b.add(&id).ok()?;
    b.add(&XorPeerAddress(peer)).ok()?;
    server.finish(b, None).ok()
}
