//! The TURN server state machine (RFC 8656): one per data-plane worker. Requests are in
//! `requests`, credentials in `auth`, responses in `responses`; the data path is here.

mod auth;
mod requests;
mod responses;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::{ConnectionId, Data, XorPeerAddress};
use farside_stun::{Class, Message, MessageBuilder, MessageType, Method, attr_type};

use crate::allocation::{Allocation, AllocationSummary, FiveTuple, Key};
use crate::channel_data::ChannelData;
use crate::config::TurnConfig;
use crate::credentials::Credentials;
use crate::nonce::Nonces;
use crate::outcome::{Dropped, Handled, Notice, RelayPorts, Transmit, TurnTransport};
use crate::quotas::Quotas;

/// An authenticated request's user and key.
#[derive(Debug, Clone)]
struct Auth {
    realm: String,
    username: String,
    key: Key,
    sha256_integrity: bool,
}

/// Either a value or the error response already written.
type Step<T> = Result<T, Handled>;

/// Channels stay reserved this long after they expire (RFC 8656 §12).
const CHANNEL_GRACE: Duration = Duration::from_secs(300);
/// A TURN server: the allocations of one data-plane worker.
#[derive(Debug)]
pub struct TurnServer {
    config: TurnConfig,
    credentials: Arc<Credentials>,
    nonces: Nonces,
    allocations: HashMap<FiveTuple, Allocation>,
    by_relayed: HashMap<SocketAddr, FiveTuple>,
    /// Allocations per user and failures per source, shared with every other worker.
    quotas: Arc<Quotas>,
    indications: u64,
    tcp_connections: HashMap<ConnectionId, tcp::TcpConnection>,
    next_connection: u32,
    connection_key: u32,
    notices: Vec<Notice>,
}

impl TurnServer {
    /// A server (one per worker) counting its users' allocations and its sources' failures in
    /// `quotas`, which every worker of the server shares (see [`Quotas`]). `nonce_key` must be
    /// random and the same for every worker: it signs the nonces.
    pub fn new(
        config: TurnConfig,
        credentials: Arc<Credentials>,
        quotas: Arc<Quotas>,
        nonce_key: [u8; 32],
    ) -> Self {
        TurnServer {
            config,
            credentials,
            nonces: Nonces::new(nonce_key),
            allocations: HashMap::new(),
            by_relayed: HashMap::new(),
            quotas,
            indications: u64::from_be_bytes([
                nonce_key[0],
                nonce_key[1],
                nonce_key[2],
                nonce_key[3],
                nonce_key[4],
                nonce_key[5],
                nonce_key[6],
                nonce_key[7],
            ]),
            tcp_connections: HashMap::new(),
            next_connection: 0,
            connection_key: u32::from_be_bytes([
                nonce_key[8],
                nonce_key[9],
                nonce_key[10],
                nonce_key[11],
            ]),
            notices: Vec::new(),
        }
    }

    /// Replaces the settings (a reload): limits, lifetimes, the peer policy, the bandwidth
    /// cap apply from the next request; allocations, permissions and channels stay.
    pub fn set_config(&mut self, config: TurnConfig) {
        self.config = config;
    }

    /// Replaces the credentials (the store changed); existing allocations stay.
    pub fn set_credentials(&mut self, credentials: Arc<Credentials>) {
        self.credentials = credentials;
    }

    /// Live allocations.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Whether `bytes` is for the TURN server rather than the Binding responder: ChannelData,
    /// or a STUN message of another method than Binding.
    pub fn wants(bytes: &[u8]) -> bool {
        if crate::channel_data::is_channel_data(bytes) {
            return true;
        }
        match bytes.get(..2) {
            Some(&[a, b]) if a & 0xC0 == 0 => {
                let t = u16::from_be_bytes([a, b]);
                // Method bits M0-M11 interleaved with the class bits (RFC 8489 §5).
                let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
                method != Method::BINDING.0
            }
            _ => false,
        }
    }

    /// Whether `bytes` only carries data for a peer (ChannelData or a Send indication) and so
    /// changes no allocation: the shell may hold such messages' data back and send it in
    /// batches, but must send what it holds before handing on any other message.
    pub fn carries_data(bytes: &[u8]) -> bool {
        let send = MessageType::new(Class::Indication, Method::SEND).to_u16();
        crate::channel_data::is_channel_data(bytes) || bytes.starts_with(&send.to_be_bytes())
    }

    /// Handles what a client sent to `local` from `remote` over `transport`: a STUN request
    /// or indication, or one ChannelData message.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_client(
        &mut self,
        now: Timestamp,
        transport: TurnTransport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Handled {
        let five = FiveTuple {
            client: remote,
            server: local,
            transport,
        };
        if crate::channel_data::is_channel_data(bytes) {
            return self.client_channel_data(now, five, bytes, out);
        }
        let Ok(msg) = Message::parse(bytes) else {
            return Handled::Dropped(Dropped::Malformed);
        };
        if !msg.has_magic_cookie() {
            return Handled::Dropped(Dropped::NotTurn);
        }
        if msg.raw_attribute(attr_type::FINGERPRINT).is_some() && msg.check_fingerprint().is_err() {
            return Handled::Dropped(Dropped::NotTurn);
        }
        match msg.class() {
            Class::Request => match self.request(now, five, &msg, relay, out) {
                Ok(h) | Err(h) => h,
            },
            Class::Indication if msg.method() == Method::SEND => {
                self.send(now, five, &msg, relay, out)
            }
            _ => Handled::Dropped(Dropped::Unexpected),
        }
    }

    /// Handles a datagram from `peer` on the relay socket `relayed`: relayed to the client as
    /// ChannelData if a channel is bound to the peer, else as a Data indication.
    pub fn handle_peer(
        &mut self,
        now: Timestamp,
        relayed: SocketAddr,
        peer: SocketAddr,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Handled {
        let Some(five) = self.by_relayed.get(&relayed).copied() else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        let cap = self.config.max_bandwidth;
        let Some(a) = self.allocations.get_mut(&five).filter(|a| a.expires > now) else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        if !a.has_permission(peer.ip(), now) {
            return Handled::Dropped(Dropped::NoPermission);
        }
        if cap > 0 && !a.spend(bytes.len(), cap, now) {
            return Handled::Dropped(Dropped::OverBandwidth);
        }
        a.relayed_bytes += bytes.len() as u64;
        let len = match a.peer_channel(peer, now) {
            Some(ch) => ChannelData::write(ch, bytes, five.transport.is_stream(), out),
            None => {
                self.indications = self.indications.wrapping_add(1);
                data_indication(self.indications, peer, bytes, out)
            }
        };
        match len {
            Some(len) => Handled::Relayed(Transmit {
                len,
                from: five.server,
                to: five.client,
            }),
            None => Handled::Dropped(Dropped::NoRoom),
        }
    }

    /// Removes expired allocations (releasing their relay ports), permissions and channels,
    /// and forgets old authentication failures. Call about once a second.
    pub fn expire(&mut self, now: Timestamp, relay: &mut dyn RelayPorts) -> usize {
        let dead: Vec<FiveTuple> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(f, _)| *f)
            .collect();
        for five in &dead {
            self.remove(five, relay);
        }
        for a in self.allocations.values_mut() {
            a.expire(now, CHANNEL_GRACE);
        }
        self.expire_tcp(now);
        self.quotas.expire(now);
        dead.len()
    }

    /// Every allocation of this server, as an operator sees it at `now`.
    pub fn allocations(&self, now: Timestamp) -> impl Iterator<Item = AllocationSummary> + '_ {
        self.allocations
            .iter()
            .map(move |(&f, a)| a.summary(f, now))
    }

    /// Ends the allocation of `five` at an operator's request, releasing its relay ports as
    /// expiry would: the client's next Refresh gets 437 (RFC 8656 §7.3). Returns whether
    /// there was one.
    pub fn end(&mut self, five: FiveTuple, relay: &mut dyn RelayPorts) -> bool {
        let had = self.allocations.contains_key(&five);
        self.remove(&five, relay);
        had
    }

    /// Whether `five` has a live allocation.
    pub fn has_allocation(&self, five: &FiveTuple) -> bool {
        self.allocations.contains_key(five)
    }

    /// The client's TCP or TLS connection closed: its allocation, if any, goes with it
    /// (RFC 8656 §2.1: the allocation is bound to the connection). Returns whether there was one.
    pub fn connection_closed(&mut self, five: FiveTuple, relay: &mut dyn RelayPorts) -> bool {
        self.end(five, relay)
    }

    fn remove(&mut self, five: &FiveTuple, relay: &mut dyn RelayPorts) {
        if let Some(a) = self.allocations.remove(five) {
            if a.tcp {
                self.close_tcp_connections(five);
            }
            for r in a.relayed_addresses() {
                self.by_relayed.remove(&r);
                relay.release(r);
            }
            self.quotas.give_back_allocation(&a.realm, &a.username);
        }
    }

    fn send(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Handled {
        let cap = self.config.max_bandwidth;
        let Some(a) = self.allocations.get_mut(&five).filter(|a| a.expires > now) else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        if a.tcp {
            return Handled::Dropped(Dropped::TcpAllocation);
        }
        let (Some(Ok(XorPeerAddress(peer))), Some(Ok(Data(data)))) =
            (msg.attribute::<XorPeerAddress>(), msg.attribute::<Data>())
        else {
            return Handled::Dropped(Dropped::Malformed);
        };
        // Indications are never answered: no permission, no relay (RFC 8656 §10.2).
        // A permission is for an address; the port a Send names must not be one of the
        // server's own listeners (the relay's own ports are fine: another allocation).
        if !a.has_permission(peer.ip(), now) || !self.config.peer_policy.permits_to(peer) {
            return Handled::Dropped(Dropped::NoPermission);
        }
        if cap > 0 && !a.spend(data.len(), cap, now) {
            return Handled::Dropped(Dropped::OverBandwidth);
        }
        a.relayed_bytes += data.len() as u64;
        let Some(from) = a.relayed_for(peer.ip()) else {
            return Handled::Dropped(Dropped::NoPermission);
        };
        // DONT-FRAGMENT on a Send (RFC 8656 §11.2): the relay socket sets DF from then on; if
        // it cannot, the datagram is dropped rather than sent fragmentable.
        if msg.raw_attribute(attr_type::DONT_FRAGMENT).is_some() && !a.dont_fragment {
            if !relay.dont_fragment(from) {
                return Handled::Dropped(Dropped::NoDontFragment);
            }
            a.dont_fragment = true;
        }
        relay_to_peer(from, peer, data, out)
    }

    fn client_channel_data(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Handled {
        let Some(cd) = ChannelData::parse(bytes) else {
            return Handled::Dropped(Dropped::Malformed);
        };
        let cap = self.config.max_bandwidth;
        let Some(a) = self.allocations.get_mut(&five).filter(|a| a.expires > now) else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        if a.tcp {
            return Handled::Dropped(Dropped::TcpAllocation);
        }
        let Some(peer) = a.channel_peer(cd.channel, now) else {
            return Handled::Dropped(Dropped::NoChannel);
        };
        if !a.has_permission(peer.ip(), now) {
            return Handled::Dropped(Dropped::NoPermission);
        }
        if cap > 0 && !a.spend(cd.data.len(), cap, now) {
            return Handled::Dropped(Dropped::OverBandwidth);
        }
        a.relayed_bytes += cd.data.len() as u64;
        let Some(from) = a.relayed_for(peer.ip()) else {
            return Handled::Dropped(Dropped::NoPermission);
        };
        relay_to_peer(from, peer, cd.data, out)
    }
}

fn relay_to_peer(relayed: SocketAddr, peer: SocketAddr, data: &[u8], out: &mut [u8]) -> Handled {
    match out.get_mut(..data.len()) {
        Some(buf) => {
            buf.copy_from_slice(data);
            Handled::Relayed(Transmit {
                len: data.len(),
                from: relayed,
                to: peer,
            })
        }
        None => Handled::Dropped(Dropped::NoRoom),
    }
}

/// A Data indication carrying `data` from `peer` (RFC 8656 §11.3); no integrity.
fn data_indication(counter: u64, peer: SocketAddr, data: &[u8], out: &mut [u8]) -> Option<usize> {
    // Indications need a fresh transaction id, not a secret one (RFC 8489 §5): a counter
    // that starts at a random value.
    let mut tid = [0u8; 12];
    tid[4..].copy_from_slice(&counter.to_be_bytes());
    let header = farside_stun::Header::new(farside_stun::TransactionId(tid));
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(Class::Indication, Method::DATA),
        header,
    )
    .ok()?;
    b.add(&XorPeerAddress(peer)).ok()?;
    b.add(&Data(data)).ok()?;
    Some(b.finish())
}
