//! A deterministic simulated network for the SIP server: phones ([`phone`]) on private networks
//! behind NAT gateways ([`nat`]) or on public addresses, a WAN with a fixed delay, and the real
//! [`SipServer`] at [`SERVER`]. [`World::run_until`] steps the clock from one wake-up to the next
//! (a packet's arrival, the server's timeout, a phone's), so minutes of protocol time take
//! milliseconds, and the same seeds give the same run.

#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "each scenario uses part of this"
)]

pub mod nat;
pub mod phone;
pub mod relay;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use farside_sip::digest::Algorithm;
use farside_sip::keepalive::{KeepaliveConfig, Method};
use farside_sip::media::RelayPolicy;
use farside_sip::nat::Transport;
use farside_sip::registrar::{Binding, Flow, RegistrarConfig, Users};
use farside_sip::server::{Event, Keys, Limits, Mode, SipServer, SipServerConfig};
use farside_time::Timestamp;

pub use nat::{Nat, NatSpec};
pub use phone::{Answer, Phone, md5_hex};

/// Farside's SIP address.
pub const SERVER: &str = "192.0.2.10:5060";
pub const DOMAIN: &str = "example.org";
/// One-way WAN delay.
pub const DELAY: Duration = Duration::from_millis(20);
/// When the world starts.
pub const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// The users of the store: password "secret-<user>".
pub struct Passwords;

impl Users for Passwords {
    fn ha1(&self, realm: &str, user: &str, algorithm: Algorithm) -> Option<Vec<u8>> {
        if algorithm != Algorithm::Md5 || !["alice", "bob", "carol"].contains(&user) {
            return None;
        }
        let h = md5_hex(&format!("{user}:{realm}:secret-{user}"));
        Some(
            (0..16)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
                .collect(),
        )
    }
}

/// The server's configuration in the scenarios: a registrar for [`DOMAIN`] on [`SERVER`] over
/// UDP, pinging NATed phones with OPTIONS every `keepalive` (none: off).
pub fn config(keepalive: Option<Duration>) -> SipServerConfig {
    SipServerConfig {
        registrar: RegistrarConfig {
            domain: DOMAIN.into(),
            realm: DOMAIN.into(),
            algorithms: vec![Algorithm::Md5],
            ..RegistrarConfig::default()
        },
        mode: Mode::Registrar,
        keepalive: keepalive.map(|i| KeepaliveConfig {
            interval_ms: i.as_millis() as u64,
            method: Method::Options,
            from: format!("sip:keepalive@{DOMAIN}"),
            max_failures: 3,
            all_contacts: false,
        }),
        listeners: vec![(addr(SERVER), Transport::Udp)],
        limits: Limits::default(),
        software: None,
        relay: RelayPolicy::Nated,
        mirror_user: farside_sip::mirror::DEFAULT_USER.into(),
        echo_user: farside_sip::echo::DEFAULT_USER.into(),
    }
}

pub fn keys() -> Keys {
    Keys {
        nonces: [7; 32],
        flow_tokens: [8; 32],
    }
}

/// A SIP server as Farside's shell builds it: with the store's users.
pub fn server(config: SipServerConfig, seed: u64) -> SipServer {
    let mut s = SipServer::new(config, keys(), seed);
    s.set_users(Arc::new(Passwords));
    s
}

struct Packet {
    at: Timestamp,
    seq: u64,
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

/// A phone in the world and the gateway it sits behind, if any.
struct Host {
    phone: Phone,
    nat: Option<usize>,
}

pub struct World {
    pub now: Timestamp,
    pub server: SipServer,
    hosts: Vec<Host>,
    pub nats: Vec<Nat>,
    wire: Vec<Packet>,
    seq: u64,
    /// Everything the server reported.
    pub events: Vec<Event>,
    /// The store: each address of record's bindings as last reported.
    pub store: HashMap<String, Vec<Binding>>,
    /// Datagrams the server sent.
    pub sent_by_server: u64,
}

/// A handle on a phone of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhoneId(usize);

impl World {
    pub fn new(server: SipServer) -> Self {
        World {
            now: T0,
            server,
            hosts: Vec::new(),
            nats: Vec::new(),
            wire: Vec::new(),
            seq: 0,
            events: Vec::new(),
            store: HashMap::new(),
            sent_by_server: 0,
        }
    }

    /// A gateway with public address `public`.
    pub fn add_nat(&mut self, spec: NatSpec, public: &str) -> usize {
        self.nats.push(Nat::new(spec, public.parse().expect("ip")));
        self.nats.len() - 1
    }

    /// A phone of `user` at `addr`, behind gateway `nat` (or on a public address).
    pub fn add_phone(&mut self, user: &str, addr_: &str, nat: Option<usize>) -> PhoneId {
        let phone = Phone::new(
            user,
            &format!("secret-{user}"),
            DOMAIN,
            addr(addr_),
            addr(SERVER),
        );
        self.hosts.push(Host { phone, nat });
        PhoneId(self.hosts.len() - 1)
    }

    pub fn phone(&mut self, id: PhoneId) -> &mut Phone {
        &mut self.hosts[id.0].phone
    }

    /// `id` sends `bytes` to Farside now.
    pub fn send(&mut self, id: PhoneId, bytes: Vec<u8>) {
        let host = &self.hosts[id.0];
        let (src, dst) = (host.phone.addr, host.phone.proxy);
        let (src, bytes) = match host.nat {
            Some(n) => self.nats[n].outbound(self.now, src, dst, &bytes),
            None => (src, bytes),
        };
        self.put(src, dst, bytes);
    }

    fn put(&mut self, src: SocketAddr, dst: SocketAddr, bytes: Vec<u8>) {
        self.seq += 1;
        self.wire.push(Packet {
            at: self.now + DELAY,
            seq: self.seq,
            src,
            dst,
            bytes,
        });
    }

    /// Starts a REGISTER of phone `id` (the Digest exchange follows by itself).
    pub fn register(&mut self, id: PhoneId) {
        let req = self.phone(id).register(None);
        self.send(id, req);
    }

    /// Phone `id` calls `callee` (`sip:user@domain`).
    pub fn call(&mut self, id: PhoneId, callee: &str, call_id: &str) {
        let req = self.phone(id).invite(callee, call_id);
        self.send(id, req);
    }

    /// Phone `id` hangs up the call it made.
    pub fn hang_up(&mut self, id: PhoneId, call_id: &str) {
        if let Some(bye) = self.phone(id).bye(call_id) {
            self.send(id, bye);
        }
    }

    /// Restarts the server from what the store holds, with the same keys.
    pub fn restart(&mut self, config: SipServerConfig, seed: u64) {
        let mut fresh = server(config, seed);
        for (aor, bindings) in &self.store {
            let live: Vec<Binding> = bindings
                .iter()
                .filter(|b| b.expires_at > self.now)
                .cloned()
                .collect();
            if !live.is_empty() {
                fresh.restore(aor.clone(), live);
            }
        }
        self.server = fresh;
    }

    /// Runs the world until `end`, from one wake-up to the next.
    pub fn run_until(&mut self, end: Timestamp) {
        loop {
            self.drain_server();
            let next_packet = self.wire.iter().map(|p| p.at).min();
            let next_phone = self
                .hosts
                .iter()
                .filter_map(|h| h.phone.next_wake_ms())
                .min()
                .map(Timestamp::from_unix_millis);
            let next = [next_packet, self.server.poll_timeout(), next_phone]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => {
                    self.now = end;
                    return;
                }
            }
            if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                self.server.handle_timeout(self.now);
            }
            let now_ms = self.now.unix_millis();
            for i in 0..self.hosts.len() {
                if let Some(b) = self.hosts[i].phone.poll(now_ms) {
                    self.send(PhoneId(i), b);
                }
            }
            self.deliver_due();
        }
    }

    /// Runs the world for `d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due: Vec<Packet> = Vec::new();
        let mut i = 0;
        while i < self.wire.len() {
            if self.wire[i].at <= now {
                due.push(self.wire.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.seq));
        let server = addr(SERVER);
        for p in due {
            if p.dst == server {
                let flow = Flow {
                    transport: Transport::Udp,
                    local: server,
                    remote: p.src,
                };
                self.server.handle_input(now, flow, &p.bytes);
                continue;
            }
            self.deliver_to_phone(p);
        }
    }

    /// A datagram from Farside for `p.dst`: through the gateway that owns that address, or
    /// straight to a phone with a public address.
    fn deliver_to_phone(&mut self, p: Packet) {
        let now = self.now;
        let inside = match self.nats.iter().position(|n| n.public_ip == p.dst.ip()) {
            Some(n) => match self.nats[n].inbound(now, p.src, p.dst) {
                Some(inside) => inside,
                None => return,
            },
            None => p.dst,
        };
        let Some(i) = self.hosts.iter().position(|h| h.phone.addr == inside) else {
            return;
        };
        let replies = self.hosts[i].phone.receive(now.unix_millis(), &p.bytes);
        for r in replies {
            self.send(PhoneId(i), r);
        }
    }

    fn drain_server(&mut self) {
        while let Some(t) = self.server.poll_transmit() {
            self.sent_by_server += 1;
            self.put(t.from, t.to, t.bytes);
        }
        while let Some(e) = self.server.poll_event() {
            if let Event::BindingsChanged { aor, bindings } = &e {
                self.store.insert(aor.clone(), bindings.clone());
            }
            self.events.push(e);
        }
    }

    /// How many events match `f`.
    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    /// The public address the server sees phone `id` at (its NAT's, or its own).
    pub fn public_ip_of(&self, id: PhoneId) -> IpAddr {
        match self.hosts[id.0].nat {
            Some(n) => self.nats[n].public_ip,
            None => self.hosts[id.0].phone.addr.ip(),
        }
    }
}
