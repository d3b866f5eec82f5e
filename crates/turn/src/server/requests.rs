//! Allocate, Refresh, CreatePermission and ChannelBind (RFC 8656 §7 to §11).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::{
    AdditionalAddressFamily, AddressErrorCode, AddressFamily, ChannelNumber, EvenPort, Lifetime,
    RequestedAddressFamily, RequestedTransport, ReservationToken, XorMappedAddress, XorPeerAddress,
    XorRelayedAddress,
};
use farside_stun::{Message, Method, attr_type};

use super::{Auth, Step, TurnServer};
use crate::allocation::{Allocation, ChannelConflict, FiveTuple};
use crate::outcome::{Dropped, Handled, Refusal, RelayError, RelayPorts, TurnTransport};

/// Comprehension-required attributes a TURN request may carry here. DONT-FRAGMENT is known,
/// but if the shell cannot set the DF bit the request gets 420 all the same (RFC 8656 §7.2).
const KNOWN: &[u16] = &[
    attr_type::USERNAME,
    attr_type::MESSAGE_INTEGRITY,
    attr_type::MESSAGE_INTEGRITY_SHA256,
    attr_type::REALM,
    attr_type::NONCE,
    attr_type::USERHASH,
    attr_type::PASSWORD_ALGORITHM,
    attr_type::XOR_MAPPED_ADDRESS,
    attr_type::CHANNEL_NUMBER,
    attr_type::LIFETIME,
    attr_type::XOR_PEER_ADDRESS,
    attr_type::DATA,
    attr_type::REQUESTED_ADDRESS_FAMILY,
    attr_type::EVEN_PORT,
    attr_type::REQUESTED_TRANSPORT,
    attr_type::RESERVATION_TOKEN,
    attr_type::DONT_FRAGMENT,
    attr_type::CONNECTION_ID,
];

/// REQUESTED-TRANSPORT's protocol numbers (RFC 8656 §18.13, RFC 6062 §5.1).
const UDP: u8 = 17;
const TCP: u8 = 6;

/// ADDITIONAL-ADDRESS-FAMILY's code point in draft-ietf-tram-turnbis, before RFC 8656 gave it
/// 0x8000; comprehension-optional either way.
const LEGACY_ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8032;

impl TurnServer {
    pub(super) fn request(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Step<Handled> {
        let auth = match self.admit(now, five, msg, out) {
            Ok(auth) => auth,
            Err(refused) => return Err(self.limit_refusal(now, five, refused)),
        };
        let method = msg.method();
        if method == Method::ALLOCATE {
            return self.allocate(now, five, msg, &auth, relay, out);
        }
        if method == Method::CONNECTION_BIND {
            // It names its allocation by CONNECTION-ID, on a connection that has none.
            return self.connection_bind(now, five, msg, &auth, out);
        }
        // Every other request acts on the 5-tuple's allocation, by its owner (RFC 8656 §7.3).
        match self.allocations.get(&five) {
            Some(a) if a.expires > now => {
                if a.username != auth.username || a.realm != auth.realm {
                    return Err(self.error(
                        msg,
                        five,
                        Refusal::WrongCredentials,
                        Some(&auth),
                        &[],
                        out,
                    ));
                }
            }
            _ => {
                return Err(self.error(
                    msg,
                    five,
                    Refusal::AllocationMismatch,
                    Some(&auth),
                    &[],
                    out,
                ));
            }
        }
        match method {
            Method::REFRESH => self.refresh(now, five, msg, &auth, relay, out),
            Method::CREATE_PERMISSION => self.create_permission(now, five, msg, &auth, out),
            Method::CONNECT => self.connect(now, five, msg, &auth, out),
            _ => self.channel_bind(now, five, msg, &auth, out),
        }
    }

    /// What comes before a request is acted on, and what anyone can draw without credentials:
    /// unknown attributes, unknown methods, then authentication.
    fn admit(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Step<Auth> {
        // RFC 8489 §6.3.1: unknown comprehension-required attributes first.
        if msg.unknown_comprehension_required(KNOWN).next().is_some() {
            let mut unknown = [0u16; 8];
            let mut n = 0;
            for t in msg.unknown_comprehension_required(KNOWN).take(8) {
                unknown[n] = t;
                n += 1;
            }
            return Err(self.error(
                msg,
                five,
                Refusal::UnknownAttribute,
                None,
                &unknown[..n],
                out,
            ));
        }
        let method = msg.method();
        if ![
            Method::ALLOCATE,
            Method::REFRESH,
            Method::CREATE_PERMISSION,
            Method::CHANNEL_BIND,
            Method::CONNECT,
            Method::CONNECTION_BIND,
        ]
        .contains(&method)
        {
            return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out));
        }
        self.authenticate(now, five, msg, out)
    }

    /// A refusal of an unauthenticated request, sent over UDP only within the source's budget
    /// per second: a 401 is several times its Allocate, and over UDP the source may be forged.
    fn limit_refusal(&self, now: Timestamp, five: FiveTuple, refused: Handled) -> Handled {
        match refused {
            Handled::Refused(..)
                if five.transport == TurnTransport::Udp
                    && !self.quotas.refusal_allowed(five.client.ip(), now) =>
            {
                Handled::Dropped(Dropped::RefusalRateLimited)
            }
            other => other,
        }
    }

    fn allocate(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Step<Handled> {
        if let Some(a) = self.allocations.get(&five).filter(|a| a.expires > now) {
            // A retransmitted Allocate gets its success again; anything else is a mismatch.
            if a.allocate_transaction == msg.transaction_id() && a.username == auth.username {
                let relayed = (a.relayed, a.relayed6);
                let left = a.expires.saturating_duration_since(now).as_secs();
                return self.allocate_success(msg, five, auth, relayed, None, left, None, out);
            }
            return Err(self.refused(msg, five, auth, Refusal::AllocationMismatch, out));
        }
        // Draining: new allocations go elsewhere, once the client has proved who it is (an
        // authenticated 300, so a forged one cannot send clients away; RFC 8489 §10).
        if let Some(&alternate) = self
            .config
            .alternate_servers
            .iter()
            .find(|a| a.is_ipv4() == five.client.is_ipv4())
        {
            return Err(self.try_alternate(msg, five, auth, alternate, out));
        }
        let refuse = |s: &Self, r, out: &mut [u8]| Err(s.refused(msg, five, auth, r, out));
        let tcp = match msg.attribute::<RequestedTransport>() {
            None | Some(Err(_)) => return refuse(self, Refusal::BadRequest, out),
            Some(Ok(RequestedTransport(UDP))) => false,
            Some(Ok(RequestedTransport(TCP))) if self.config.tcp_relay => true,
            Some(Ok(_)) => return refuse(self, Refusal::UnsupportedTransport, out),
        };
        // RFC 6062 §5.1: TCP relaying needs a TCP or TLS control connection, and has no use
        // for the datagram attributes.
        if tcp
            && (!five.transport.is_stream()
                || [
                    attr_type::DONT_FRAGMENT,
                    attr_type::EVEN_PORT,
                    attr_type::RESERVATION_TOKEN,
                ]
                .iter()
                .any(|&t| msg.raw_attribute(t).is_some()))
        {
            return refuse(self, Refusal::BadRequest, out);
        }
        let family = match msg.attribute::<RequestedAddressFamily>() {
            None => AddressFamily::V4,
            Some(Ok(RequestedAddressFamily(f))) => f,
            Some(Err(_)) => return refuse(self, Refusal::AddressFamilyNotSupported, out),
        };
        let even_port = match msg.attribute::<EvenPort>() {
            None => None,
            Some(Ok(EvenPort { reserve })) => Some(reserve),
            Some(Err(_)) => return refuse(self, Refusal::BadRequest, out),
        };
        let token = match msg.attribute::<ReservationToken>() {
            None => None,
            Some(Ok(ReservationToken(t))) => Some(t),
            Some(Err(_)) => return refuse(self, Refusal::BadRequest, out),
        };
        // RFC 8656 §7.2: ADDITIONAL-ADDRESS-FAMILY asks for an IPv6 relayed address beside the
        // IPv4 one; it cannot come with REQUESTED-ADDRESS-FAMILY, a token or a reservation.
        let additional = msg.attribute::<AdditionalAddressFamily>().or_else(|| {
            // coturn before 4.7 (Debian 12's 4.6.1 among them) sends the draft's code point.
            msg.raw_attribute(LEGACY_ADDITIONAL_ADDRESS_FAMILY)
                .map(|a| {
                    <AdditionalAddressFamily as farside_stun::Attribute>::decode(
                        a.value,
                        &msg.header(),
                    )
                })
        });
        let dual = match additional {
            None => false,
            Some(Ok(AdditionalAddressFamily(AddressFamily::V6))) => true,
            Some(_) => return refuse(self, Refusal::BadRequest, out),
        };
        if dual
            && (token.is_some()
                || even_port == Some(true)
                || msg
                    .raw_attribute(attr_type::REQUESTED_ADDRESS_FAMILY)
                    .is_some())
        {
            return refuse(self, Refusal::BadRequest, out);
        }
        // RFC 8656 §7.2: a token names the address, so neither a family nor EVEN-PORT may
        // come with it.
        if token.is_some()
            && (even_port.is_some()
                || msg
                    .raw_attribute(attr_type::REQUESTED_ADDRESS_FAMILY)
                    .is_some())
        {
            return refuse(self, Refusal::BadRequest, out);
        }
        if self.allocations.len() >= self.config.max_allocations
            || !self.quotas.allocation_allowed(&auth.realm, &auth.username)
        {
            return refuse(self, Refusal::QuotaReached, out);
        }
        let got = match (token, even_port) {
            _ if tcp => relay.allocate_tcp(family).map(|a| (a, None)),
            (Some(t), _) => relay
                .claim(t)
                .map(|a| (a, None))
                .ok_or(RelayError::Exhausted),
            (None, Some(true)) => relay.allocate_reserving(family).map(|(a, t)| (a, Some(t))),
            (None, even) => relay.allocate(family, even.is_some()).map(|a| (a, None)),
        };
        let (relayed, reserved) = match got {
            Ok(r) => r,
            Err(RelayError::Exhausted) => return refuse(self, Refusal::InsufficientCapacity, out),
            Err(RelayError::Quota) => return refuse(self, Refusal::QuotaReached, out),
            Err(RelayError::FamilyUnsupported) => {
                return refuse(self, Refusal::AddressFamilyNotSupported, out);
            }
            Err(RelayError::TransportUnsupported) => {
                return refuse(self, Refusal::UnsupportedTransport, out);
            }
        };
        // The IPv6 half of a dual allocation may fail alone: the answer then says why in
        // ADDRESS-ERROR-CODE and the IPv4 half stands.
        let (relayed6, address_error) = if dual {
            let six = if tcp {
                relay.allocate_tcp(AddressFamily::V6)
            } else {
                relay.allocate(AddressFamily::V6, false)
            };
            match six {
                Ok(a) => (Some(a), None),
                Err(RelayError::FamilyUnsupported) => {
                    (None, Some(Refusal::AddressFamilyNotSupported))
                }
                Err(RelayError::TransportUnsupported) => {
                    (None, Some(Refusal::UnsupportedTransport))
                }
                Err(RelayError::Quota) => (None, Some(Refusal::QuotaReached)),
                Err(RelayError::Exhausted) => (None, Some(Refusal::InsufficientCapacity)),
            }
        } else {
            (None, None)
        };
        // DONT-FRAGMENT: every datagram of the allocation leaves with DF, or the request is
        // refused as if the attribute were unknown.
        if msg.raw_attribute(attr_type::DONT_FRAGMENT).is_some()
            && !std::iter::once(relayed)
                .chain(relayed6)
                .all(|r| relay.dont_fragment(r))
        {
            relay.release(relayed);
            if let Some(r6) = relayed6 {
                relay.release(r6);
            }
            return Err(self.error(
                msg,
                five,
                Refusal::UnknownAttribute,
                Some(auth),
                &[attr_type::DONT_FRAGMENT],
                out,
            ));
        }
        // The user's count is taken only now, in one step with the check, so that another
        // worker's Allocate for the same user in the meantime cannot push it over.
        if !self.quotas.take_allocation(&auth.realm, &auth.username) {
            relay.release(relayed);
            if let Some(r6) = relayed6 {
                relay.release(r6);
            }
            return refuse(self, Refusal::QuotaReached, out);
        }
        let lifetime = self.lifetime(msg);
        let mut allocation = Allocation::new(
            relayed,
            auth.realm.clone(),
            auth.username.clone(),
            now + lifetime,
            msg.transaction_id(),
        );
        allocation.relayed6 = relayed6;
        allocation.dont_fragment = msg.raw_attribute(attr_type::DONT_FRAGMENT).is_some();
        allocation.tcp = tcp;
        self.allocations.insert(five, allocation);
        self.by_relayed.insert(relayed, five);
        if let Some(r6) = relayed6 {
            self.by_relayed.insert(r6, five);
        }
        let r = self.allocate_success(
            msg,
            five,
            auth,
            (relayed, relayed6),
            address_error,
            lifetime.as_secs(),
            reserved,
            out,
        );
        if r.is_err() {
            // The answer did not fit: keep no allocation nobody was told about.
            self.remove(&five, relay);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate_success(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        relayed: (SocketAddr, Option<SocketAddr>),
        address_error: Option<Refusal>,
        lifetime: u64,
        reserved: Option<[u8; 8]>,
        out: &mut [u8],
    ) -> Step<Handled> {
        let lifetime = u32::try_from(lifetime).unwrap_or(u32::MAX);
        self.success(msg, five, auth, out, |b| {
            b.add(&XorRelayedAddress(relayed.0)).ok()?;
            if let Some(r6) = relayed.1 {
                b.add(&XorRelayedAddress(r6)).ok()?;
            }
            if let Some(e) = address_error {
                b.add(&AddressErrorCode {
                    family: AddressFamily::V6,
                    code: e.code(),
                    reason: e.reason(),
                })
                .ok()?;
            }
            b.add(&Lifetime(lifetime)).ok()?;
            if let Some(t) = reserved {
                b.add(&ReservationToken(t)).ok()?;
            }
            b.add(&XorMappedAddress(five.client)).ok()
        })
    }

    /// RFC 8656 §7.2: min(requested, max), but never below the default.
    fn lifetime(&self, msg: &Message<'_>) -> Duration {
        let asked = match msg.attribute::<Lifetime>() {
            Some(Ok(Lifetime(s))) => Duration::from_secs(u64::from(s)),
            _ => self.config.default_lifetime,
        };
        asked
            .min(self.config.max_lifetime)
            .max(self.config.default_lifetime)
    }

    fn refresh(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Step<Handled> {
        // RFC 8656 §7.3: a family that differs from the allocation's is a 443.
        if let Some(Ok(RequestedAddressFamily(f))) = msg.attribute::<RequestedAddressFamily>() {
            let has = self.allocations.get(&five).is_some_and(|a| {
                a.relayed_addresses()
                    .any(|r| r.is_ipv4() == (f == AddressFamily::V4))
            });
            if !has {
                return Err(self.refused(msg, five, auth, Refusal::PeerAddressFamilyMismatch, out));
            }
        }
        let lifetime = match msg.attribute::<Lifetime>() {
            Some(Ok(Lifetime(0))) => Duration::ZERO,
            _ => self.lifetime(msg),
        };
        if lifetime.is_zero() {
            self.remove(&five, relay);
        } else if let Some(a) = self.allocations.get_mut(&five) {
            a.expires = now + lifetime;
        }
        let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        self.success(msg, five, auth, out, |b| b.add(&Lifetime(secs)).ok())
    }

    fn create_permission(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        out: &mut [u8],
    ) -> Step<Handled> {
        // Check every XOR-PEER-ADDRESS before installing any (RFC 8656 §10.2).
        let mut peers = [IpAddr::from([0u8; 4]); 16];
        let mut n = 0;
        for a in msg
            .attributes()
            .filter(|a| a.typ == attr_type::XOR_PEER_ADDRESS)
        {
            let Ok(XorPeerAddress(peer)) =
                <XorPeerAddress as farside_stun::Attribute>::decode(a.value, &msg.header())
            else {
                return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
            };
            if n == peers.len() {
                return Err(self.refused(msg, five, auth, Refusal::InsufficientCapacity, out));
            }
            self.check_peer(msg, five, auth, peer, out)?;
            peers[n] = peer.ip();
            n += 1;
        }
        if n == 0 {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        }
        let max = self.config.max_permissions;
        let until = now + self.config.permission_lifetime;
        let Some(a) = self.allocations.get_mut(&five) else {
            return Err(Handled::Dropped(Dropped::NoAllocation));
        };
        if !a.permissions_fit(&peers[..n], max, now) {
            return Err(self.refused(msg, five, auth, Refusal::InsufficientCapacity, out));
        }
        for p in &peers[..n] {
            a.permit(*p, until);
        }
        self.success(msg, five, auth, out, |_| Some(()))
    }

    fn channel_bind(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        out: &mut [u8],
    ) -> Step<Handled> {
        let (Some(Ok(ChannelNumber(channel))), Some(Ok(XorPeerAddress(peer)))) = (
            msg.attribute::<ChannelNumber>(),
            msg.attribute::<XorPeerAddress>(),
        ) else {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        };
        // A TCP allocation has no channels (RFC 6062 §4: data goes over data connections).
        let tcp = self.allocations.get(&five).is_some_and(|a| a.tcp);
        if tcp || !crate::channel_data::CHANNELS.contains(&channel) {
            return Err(self.refused(msg, five, auth, Refusal::BadRequest, out));
        }
        self.check_peer(msg, five, auth, peer, out)?;
        // A channel names the port too: not one of the server's own listeners.
        if !self.config.peer_policy.permits_to(peer) {
            return Err(self.refused(msg, five, auth, Refusal::PeerForbidden, out));
        }
        let (max, until) = (self.config.max_channels, now + self.config.channel_lifetime);
        let permission_until = now + self.config.permission_lifetime;
        let Some(a) = self.allocations.get_mut(&five) else {
            return Err(Handled::Dropped(Dropped::NoAllocation));
        };
        match a.bind_channel(channel, peer, until, max, now) {
            Ok(()) => {}
            Err(ChannelConflict::TooManyChannels) => {
                return Err(self.refused(msg, five, auth, Refusal::InsufficientCapacity, out));
            }
            Err(_) => return Err(self.refused(msg, five, auth, Refusal::BadRequest, out)),
        }
        // A channel binding also installs or refreshes the peer's permission (RFC 8656 §11.2).
        a.permit(peer.ip(), permission_until);
        self.success(msg, five, auth, out, |_| Some(()))
    }

    /// The peer's family must be the relayed address's (443), and policy must allow it (403).
    pub(super) fn check_peer(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        peer: SocketAddr,
        out: &mut [u8],
    ) -> Step<()> {
        let reachable = self
            .allocations
            .get(&five)
            .is_some_and(|a| a.relayed_for(peer.ip()).is_some());
        if !reachable {
            return Err(self.refused(msg, five, auth, Refusal::PeerAddressFamilyMismatch, out));
        }
        if !self.config.peer_policy.permits(peer.ip()) {
            return Err(self.refused(msg, five, auth, Refusal::PeerForbidden, out));
        }
        Ok(())
    }
}
