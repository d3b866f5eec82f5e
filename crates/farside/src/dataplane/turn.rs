//! The TURN part of a data-plane worker: its [`TurnServer`] (the allocations whose clients
//! the kernel's `SO_REUSEPORT` hash sends to this worker) and their relay sockets.
//!
//! Like the STUN path, it makes no protocol decisions: datagrams go to the sans-IO core and
//! what it returns is sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use farside_time::Timestamp;

use farside_turn::{ConnectionId, Handled, Notice, TurnConfig, TurnServer, TurnTransport};

use crate::control::credentials::CredentialsCell;
use crate::dataplane::relay_ports::{PortPool, RelaySockets};
use crate::runtime::lock::lock;
use crate::telemetry::turn::{TurnCounters, TurnMetrics};

/// Largest datagram relayed (UDP's maximum payload).
pub const MAX_RELAYED: usize = 65_535;

/// Datagrams taken from one relay socket per pass.
pub const RELAY_BATCH: usize = 16;

/// Room for a relayed datagram plus the Data indication around it.
pub const TURN_OUT: usize = MAX_RELAYED + 64;

/// What the TCP thread must do for RFC 6062 after a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpAction {
    /// Open a TCP connection from `relayed` to `peer` for Connect `id`.
    Connect {
        /// The connection's identifier.
        id: ConnectionId,
        /// The local end.
        relayed: SocketAddr,
        /// The peer.
        peer: SocketAddr,
    },
    /// The connection the message came from is now the data connection of `id` (after the
    /// response returned with this action is sent).
    Bind(ConnectionId),
}

/// What the TURN workers share.
#[derive(Debug)]
pub struct TurnShared {
    /// The core's settings at start.
    pub config: TurnConfig,
    /// The core's settings as a reload replaces them.
    pub settings: Arc<crate::runtime::versioned::Versioned<TurnConfig>>,
    /// The relay port range.
    pub pool: Arc<PortPool>,
    /// IPv4 relay address.
    pub relay_v4: Option<IpAddr>,
    /// IPv6 relay address.
    pub relay_v6: Option<IpAddr>,
    /// Users and secrets.
    pub credentials: Arc<CredentialsCell>,
    /// Every worker's counters.
    pub counters: Arc<TurnMetrics>,
    /// Signs NONCEs; one for all workers, so a nonce one gave is good at any other.
    pub nonce_key: [u8; 32],
    /// Allocations per user and failed authentications per source, counted server-wide.
    pub quotas: Arc<farside_turn::Quotas>,
    /// Every worker's allocations, for the admin API, and the operator's end requests.
    pub board: Arc<crate::control::sessions::TurnBoard>,
    /// Where new allocations go while draining (`farside drain`).
    pub drain: Arc<crate::control::drain::Drain>,
}

/// One worker's TURN state.
pub struct TurnWorker {
    server: TurnServer,
    relays: RelaySockets,
    cell: Arc<CredentialsCell>,
    pool: Arc<PortPool>,
    seen: u64,
    last_expire: Timestamp,
    counters: Arc<TurnCounters>,
    board: Arc<crate::control::sessions::WorkerBoard>,
    settings: Arc<crate::runtime::versioned::Versioned<TurnConfig>>,
    settings_seen: u64,
    /// Output buffer for the core.
    pub out: Vec<u8>,
    /// Datagrams from relay sockets, taken with one `recvmmsg` per readable socket.
    rx: farside_io::RecvBatch,
    /// Set by [`TurnWorker::client`] when the TCP thread has RFC 6062 work to do.
    action: Option<TcpAction>,
    /// Data for peers from one relay socket, queued while a batch of client messages is
    /// handled and sent with one `sendmmsg` (runs for one peer segmented) when the next
    /// message is for another relay socket or [`TurnWorker::flush_to_peers`] is called.
    to_peers: farside_io::SendBatch,
    /// The relayed address whose socket `to_peers` is for.
    to_peers_from: Option<SocketAddr>,
    /// Payload bytes in `to_peers`.
    to_peers_bytes: u64,
}

impl TurnWorker {
    /// A worker's TURN state.
    pub fn new(shared: &TurnShared) -> Self {
        let now = crate::runtime::clock::now();
        let counters = Arc::new(TurnCounters::default());
        lock(&shared.counters.workers).push(Arc::clone(&counters));
        let mut seen = 0;
        let credentials = shared
            .credentials
            .newer_than(&mut seen)
            .unwrap_or_else(|| shared.credentials.load());
        TurnWorker {
            server: TurnServer::new(
                shared.config.clone(),
                credentials,
                Arc::clone(&shared.quotas),
                shared.nonce_key,
            ),
            relays: RelaySockets::new(Arc::clone(&shared.pool), shared.relay_v4, shared.relay_v6),
            cell: Arc::clone(&shared.credentials),
            pool: Arc::clone(&shared.pool),
            seen,
            last_expire: now,
            counters,
            board: shared.board.join(),
            settings: Arc::clone(&shared.settings),
            settings_seen: 0,
            out: vec![0u8; TURN_OUT],
            rx: farside_io::RecvBatch::new(RELAY_BATCH, MAX_RELAYED),
            action: None,
            to_peers: farside_io::SendBatch::new(RELAY_BATCH, TURN_OUT).with_segmentation(),
            to_peers_from: None,
            to_peers_bytes: 0,
        }
    }

    /// Once per pass: new credentials, expiry about once a second, and the allocation gauge
    /// (so it lags the core by one pass at most).
    pub fn tick(&mut self, now: Timestamp) {
        if let Some(c) = self.cell.newer_than(&mut self.seen) {
            self.server.set_credentials(c);
        }
        if let Some(c) = self.settings.newer_than(&mut self.settings_seen) {
            self.server.set_config((*c).clone());
        }
        if now.duration_since(self.last_expire) >= Duration::from_secs(1) {
            self.last_expire = now;
            self.pool.expire_reservations(now);
            self.server.expire(now, &mut self.relays);
            let snapshot = self.server.allocations(now).collect();
            for five in self.board.publish(snapshot) {
                if self.server.end(five, &mut self.relays) {
                    tracing::info!(
                        "S311 TURN allocation of {} ended by the operator",
                        five.client
                    );
                }
            }
        }
        self.counters
            .allocations
            .store(self.server.allocation_count(), Relaxed);
    }

    /// A client datagram for TURN. Returns a message to send from a client-facing address
    /// (written in `self.out`); data for peers is sent here, from its relay socket.
    pub fn client(
        &mut self,
        now: Timestamp,
        transport: TurnTransport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> Option<farside_turn::Transmit> {
        // An action is for the message that left it, never a later one.
        self.action = None;
        // Queued data goes before any request, which may end its allocation (and socket).
        if !TurnServer::carries_data(bytes) {
            self.flush_to_peers();
        }
        let h = self.server.handle_client(
            now,
            transport,
            local,
            remote,
            bytes,
            &mut self.relays,
            &mut self.out,
        );
        match h {
            Handled::Answered(t) => {
                self.counters.answered.fetch_add(1, Relaxed);
                Some(t)
            }
            Handled::Refused(t, r) => {
                self.counters.refused[r as usize].fetch_add(1, Relaxed);
                Some(t)
            }
            Handled::Relayed(t) => {
                if self.to_peers_from != Some(t.from) || self.to_peers.is_full() {
                    self.flush_to_peers();
                }
                self.to_peers_from = Some(t.from);
                let body = &self.out[..t.len];
                self.to_peers.push(t.to, |buf| {
                    buf.get_mut(..body.len())?.copy_from_slice(body);
                    Some(body.len())
                });
                self.to_peers_bytes += t.len as u64;
                None
            }
            Handled::Dropped(d) => {
                self.counters.dropped[d as usize].fetch_add(1, Relaxed);
                None
            }
            Handled::Connect { id, relayed, peer } => {
                self.action = Some(TcpAction::Connect { id, relayed, peer });
                None
            }
            Handled::Bound(t, id) => {
                self.counters.answered.fetch_add(1, Relaxed);
                self.action = Some(TcpAction::Bind(id));
                Some(t)
            }
        }
    }

    /// Sends the data for peers that [`TurnWorker::client`] queued. Call it after each batch
    /// of client messages.
    pub fn flush_to_peers(&mut self) {
        let Some(from) = self.to_peers_from.take() else {
            return;
        };
        let queued = self.to_peers.len();
        let bytes = std::mem::take(&mut self.to_peers_bytes);
        // The allocation may have ended within the batch (a Refresh with LIFETIME 0).
        let sent = match self.relays.get(from) {
            Some(socket) => crate::net::udp::send(socket, &mut self.to_peers),
            None => {
                self.to_peers.clear();
                0
            }
        };
        self.counters.to_peer.fetch_add(sent as u64, Relaxed);
        // On a partial failure (rare: a full socket buffer, an ICMP error) the bytes are
        // apportioned by datagrams.
        let sent_bytes = if sent == queued {
            bytes
        } else {
            bytes * sent as u64 / queued.max(1) as u64
        };
        self.counters.to_peer_bytes.fetch_add(sent_bytes, Relaxed);
        self.counters
            .send_failures
            .fetch_add((queued - sent) as u64, Relaxed);
    }

    /// The RFC 6062 work the last [`TurnWorker::client`] call left, if any.
    pub fn take_action(&mut self) -> Option<TcpAction> {
        self.action.take()
    }

    /// Connect `id`'s TCP connection is up or failed: the answer for the control connection
    /// (in `self.out`), or `None` if nobody waits for it (close the connection).
    pub fn peer_connected(
        &mut self,
        now: Timestamp,
        id: ConnectionId,
        connected: bool,
    ) -> Option<farside_turn::Transmit> {
        match self
            .server
            .peer_connected(now, id, connected, &mut self.out)?
        {
            Handled::Answered(t) => {
                self.counters.answered.fetch_add(1, Relaxed);
                Some(t)
            }
            Handled::Refused(t, r) => {
                self.counters.refused[r as usize].fetch_add(1, Relaxed);
                Some(t)
            }
            _ => None,
        }
    }

    /// A peer connected to the TCP relay listener at `relayed`: its id and the
    /// ConnectionAttempt for the control connection (in `self.out`), or `None` to refuse it.
    pub fn peer_connection(
        &mut self,
        now: Timestamp,
        relayed: SocketAddr,
        peer: SocketAddr,
    ) -> Option<(ConnectionId, farside_turn::Transmit)> {
        match self
            .server
            .peer_connection(now, relayed, peer, &mut self.out)
        {
            Ok(r) => Some(r),
            Err(d) => {
                self.counters.dropped[d as usize].fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// The TCP relay listener behind a poller token.
    pub fn listener_by_token(&self, token: u64) -> Option<(SocketAddr, &std::net::TcpListener)> {
        self.relays.listener_by_token(token)
    }

    /// Connections to close and answers to send that the core decided on its own.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.server.take_notices()
    }

    /// A peer connection (or its client data connection) closed.
    pub fn tcp_connection_closed(&mut self, id: ConnectionId) {
        self.server.tcp_connection_closed(id);
    }

    /// Counts `bytes` spliced between a client data connection and its peer.
    pub fn count_stream(&self, to_peer: bool, bytes: usize) {
        let (n, b) = if to_peer {
            (&self.counters.to_peer, &self.counters.to_peer_bytes)
        } else {
            (&self.counters.to_client, &self.counters.to_client_bytes)
        };
        n.fetch_add(1, Relaxed);
        b.fetch_add(bytes as u64, Relaxed);
    }

    /// Whether `five` has an allocation here.
    pub fn has_allocation(&self, five: farside_turn::FiveTuple) -> bool {
        self.server.has_allocation(&five)
    }

    /// A client connection closed: its allocation goes too.
    pub fn connection_closed(&mut self, five: farside_turn::FiveTuple) {
        self.server.connection_closed(five, &mut self.relays);
    }

    /// Relay sockets bound since the last call, to register for reading.
    pub fn take_fresh(&mut self) -> Vec<(std::os::fd::RawFd, u64)> {
        self.relays.take_fresh()
    }

    /// Reads what the relay socket behind `token` holds (one `recvmmsg`, up to
    /// [`RELAY_BATCH`] datagrams) and hands each message for the client to `send` (from a
    /// client-facing address).
    pub fn peer_readable(
        &mut self,
        now: Timestamp,
        token: u64,
        mut send: impl FnMut(farside_turn::Transmit, &[u8]),
    ) {
        let Some((relayed, socket)) = self.relays.by_token(token) else {
            return;
        };
        // An error is an ICMP report from a peer: not ours to act on.
        if !matches!(farside_io::recv_batch(socket, &mut self.rx), Ok(n) if n > 0) {
            return;
        }
        for d in self.rx.iter() {
            let h = self
                .server
                .handle_peer(now, relayed, d.source, d.payload, &mut self.out);
            match h {
                Handled::Relayed(t) => {
                    self.counters.to_client.fetch_add(1, Relaxed);
                    self.counters
                        .to_client_bytes
                        .fetch_add(d.payload.len() as u64, Relaxed);
                    send(t, &self.out[..t.len]);
                }
                Handled::Dropped(d) => {
                    self.counters.dropped[d as usize].fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
    }
}
