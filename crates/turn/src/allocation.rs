//! One allocation (RFC 8656 §2.2, §5): its relayed address, who owns it, when it expires,
//! and its permissions and channels.

use farside_time::Timestamp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use farside_stun::TransactionId;

use crate::outcome::TurnTransport;

/// The client side of an allocation: it is known by where its client's packets come from,
/// where they go to, and over what (RFC 8656 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address as the server sees it.
    pub client: SocketAddr,
    /// The server's address the client talks to.
    pub server: SocketAddr,
    /// UDP, TCP or TLS.
    pub transport: TurnTransport,
}

/// One allocation as an operator sees it (a dashboard row, an API object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationSummary {
    /// The client's 5-tuple.
    pub five: FiveTuple,
    /// The REALM it was authenticated in.
    pub realm: String,
    /// The USERNAME it was authenticated as.
    pub username: String,
    /// Its relayed transport addresses (two for a dual allocation, RFC 8656 §7.2).
    pub relayed: Vec<SocketAddr>,
    /// A TCP allocation (RFC 6062).
    pub tcp: bool,
    /// When it lapses unless refreshed.
    pub expires: Timestamp,
    /// Live permissions (peer IP addresses).
    pub permissions: usize,
    /// Live channel bindings.
    pub channels: usize,
    /// Payload bytes relayed so far, both directions.
    pub relayed_bytes: u64,
}

/// The key an allocation was authenticated with; later requests must use the same user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Md5([u8; 16]),
    Sha256([u8; 32]),
}

impl Key {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Key::Md5(k) => k,
            Key::Sha256(k) => k,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Allocation {
    pub(crate) relayed: SocketAddr,
    /// The IPv6 relayed address of a dual allocation (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2).
    pub(crate) relayed6: Option<SocketAddr>,
    /// Datagrams leave with the DF bit (DONT-FRAGMENT).
    pub(crate) dont_fragment: bool,
    /// A TCP allocation (RFC 6062): peers connect, nothing is relayed as datagrams.
    pub(crate) tcp: bool,
    pub(crate) realm: String,
    pub(crate) username: String,
    pub(crate) expires: Timestamp,
    /// The Allocate that made it, so a retransmission gets the same answer (RFC 8656 §7.2).
    pub(crate) allocate_transaction: TransactionId,
    permissions: HashMap<IpAddr, Timestamp>,
    channels: HashMap<u16, Channel>,
    channel_of_peer: HashMap<SocketAddr, u16>,
    /// Bandwidth budget in bytes (both directions), refilled at the configured rate.
    budget: u64,
    budget_at: Option<Timestamp>,
    /// Payload bytes relayed, both directions (for the operator's views).
    pub(crate) relayed_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Channel {
    peer: SocketAddr,
    expires: Timestamp,
}

/// Why a ChannelBind cannot be done (RFC 8656 §11.2: each is a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelConflict {
    ChannelTakenByOtherPeer,
    PeerOnOtherChannel,
    TooManyChannels,
}

impl Allocation {
    pub(crate) fn new(
        relayed: SocketAddr,
        realm: String,
        username: String,
        expires: Timestamp,
        allocate_transaction: TransactionId,
    ) -> Self {
        Allocation {
            relayed,
            relayed6: None,
            dont_fragment: false,
            tcp: false,
            realm,
            username,
            expires,
            allocate_transaction,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            channel_of_peer: HashMap::new(),
            budget: 0,
            budget_at: None,
            relayed_bytes: 0,
        }
    }

    /// Takes `bytes` from a budget refilled at `rate` bytes per second, with a burst of one
    /// second's worth; `false` (and nothing taken) if it would go below zero.
    pub(crate) fn spend(&mut self, bytes: usize, rate: u64, now: Timestamp) -> bool {
        let refill = match self.budget_at {
            None => rate,
            Some(at) => {
                let ns = now.saturating_duration_since(at).as_nanos();
                u64::try_from(ns.saturating_mul(u128::from(rate)) / 1_000_000_000)
                    .unwrap_or(u64::MAX)
            }
        };
        if refill > 0 || self.budget_at.is_none() {
            self.budget = self.budget.saturating_add(refill).min(rate);
            self.budget_at = Some(now);
        }
        let bytes = bytes as u64;
        if self.budget < bytes {
            return false;
        }
        self.budget -= bytes;
        true
    }

    /// The relayed address that reaches `peer` (its family's), if the allocation has one.
    pub(crate) fn relayed_for(&self, peer: IpAddr) -> Option<SocketAddr> {
        let v4 = match peer {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some() && self.relayed.is_ipv4(),
        };
        if self.relayed.is_ipv4() == v4 {
            Some(self.relayed)
        } else {
            self.relayed6.filter(|_| !v4)
        }
    }

    /// What an operator sees of it.
    pub(crate) fn summary(&self, five: FiveTuple, now: Timestamp) -> AllocationSummary {
        AllocationSummary {
            five,
            realm: self.realm.clone(),
            username: self.username.clone(),
            relayed: self.relayed_addresses().collect(),
            tcp: self.tcp,
            expires: self.expires,
            permissions: self.permissions.values().filter(|&&e| e > now).count(),
            channels: self.channels.values().filter(|c| c.expires > now).count(),
            relayed_bytes: self.relayed_bytes,
        }
    }

    /// Every relayed address.
    pub(crate) fn relayed_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.relayed).chain(self.relayed6)
    }

    pub(crate) fn has_permission(&self, peer: IpAddr, now: Timestamp) -> bool {
        self.permissions.get(&peer).is_some_and(|&e| e > now)
    }

    /// Whether installing permissions for `peers` stays within `max`.
    pub(crate) fn permissions_fit(&self, peers: &[IpAddr], max: usize, now: Timestamp) -> bool {
        let live = self.permissions.values().filter(|&&e| e > now).count();
        let new = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| !self.has_permission(**p, now) && !peers[..*i].contains(p))
            .count();
        live + new <= max
    }

    pub(crate) fn permit(&mut self, peer: IpAddr, until: Timestamp) {
        self.permissions.insert(peer, until);
    }

    /// The peer bound to `channel`, while the binding lasts.
    pub(crate) fn channel_peer(&self, channel: u16, now: Timestamp) -> Option<SocketAddr> {
        self.channels
            .get(&channel)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
    }

    /// The channel bound to `peer`, while the binding lasts.
    pub(crate) fn peer_channel(&self, peer: SocketAddr, now: Timestamp) -> Option<u16> {
        let ch = *self.channel_of_peer.get(&peer)?;
        self.channel_peer(ch, now)
            .filter(|p| *p == peer)
            .map(|_| ch)
    }

    /// Binds or refreshes `channel` to `peer` (RFC 8656 §11.2).
    pub(crate) fn bind_channel(
        &mut self,
        channel: u16,
        peer: SocketAddr,
        until: Timestamp,
        max: usize,
        now: Timestamp,
    ) -> Result<(), ChannelConflict> {
        // A binding lives on for 5 minutes after it expires, so that data in flight is not
        // delivered to the wrong peer (RFC 8656 §12); expiry here is `expires`, and a stale
        // entry still blocks rebinding to another peer until `expire` drops it.
        if let Some(c) = self.channels.get(&channel)
            && c.peer != peer
        {
            return Err(ChannelConflict::ChannelTakenByOtherPeer);
        }
        if let Some(&other) = self.channel_of_peer.get(&peer)
            && other != channel
        {
            return Err(ChannelConflict::PeerOnOtherChannel);
        }
        if !self.channels.contains_key(&channel)
            && self.channels.values().filter(|c| c.expires > now).count() >= max
        {
            return Err(ChannelConflict::TooManyChannels);
        }
        self.channels.insert(
            channel,
            Channel {
                peer,
                expires: until,
            },
        );
        self.channel_of_peer.insert(peer, channel);
        Ok(())
    }

    /// Forgets permissions that expired, and channels 5 minutes after they expired.
    pub(crate) fn expire(&mut self, now: Timestamp, channel_grace: std::time::Duration) {
        self.permissions.retain(|_, e| *e > now);
        let before = self.channels.len();
        self.channels.retain(|_, c| c.expires + channel_grace > now);
        if self.channels.len() != before {
            let channels = &self.channels;
            self.channel_of_peer
                .retain(|peer, ch| channels.get(ch).is_some_and(|c| c.peer == *peer));
        }
    }
}
