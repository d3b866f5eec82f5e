//! Relay sockets for TURN allocations: a port range shared by all workers, and each worker's
//! own sockets (the allocation's worker is the only one that reads and writes them).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::AddressFamily;
use farside_turn::{RelayError, RelayPorts};

use crate::runtime::lock::lock;

/// Most ports tried (bound and found taken by another program) before giving up with 508.
const MAX_BIND_TRIES: usize = 64;

/// The relay port range, shared by the workers: which ports Farside holds.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    last: u16,
    max: std::sync::atomic::AtomicUsize,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    used: HashSet<SocketAddr>,
    next: u16,
    /// Ports held for a RESERVATION-TOKEN, with their sockets, until they lapse.
    reserved: HashMap<[u8; 8], (SocketAddr, UdpSocket, Timestamp)>,
}

/// Peers waiting to be accepted on a TCP relay listener.
const TCP_BACKLOG: i32 = 16;

/// How long a reserved port waits for its RESERVATION-TOKEN (RFC 8656 §7.2: about 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

impl PortPool {
    /// Ports `first..=last` (`first <= last`), at most `max` held at once (the server-wide
    /// allocation limit: workers share it here).
    pub fn new(first: u16, last: u16, max: usize) -> Self {
        PortPool {
            first,
            last,
            max: max.into(),
            state: Mutex::new(PoolState {
                used: HashSet::new(),
                next: first,
                reserved: HashMap::new(),
            }),
        }
    }

    /// A new server-wide allocation limit (a reload); allocations held now stay.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ports in use now.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        lock(&self.state).used.len()
    }

    /// Releases reservations nobody claimed in time.
    pub fn expire_reservations(&self, now: Timestamp) {
        let mut st = lock(&self.state);
        let lapsed: Vec<[u8; 8]> = st
            .reserved
            .iter()
            .filter(|(_, (_, _, until))| *until <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in lapsed {
            if let Some((addr, _, _)) = st.reserved.remove(&t) {
                st.used.remove(&addr);
            }
        }
    }

    /// An even port and the next one, the next held under a fresh token.
    fn bind_pair(&self, ip: IpAddr) -> Result<(SocketAddr, UdpSocket, [u8; 8]), RelayError> {
        for _ in 0..MAX_BIND_TRIES {
            let (even, socket) = self.bind(ip, true)?;
            let next = SocketAddr::new(ip, even.port().wrapping_add(1));
            let mut st = lock(&self.state);
            let free = next.port() != 0 && next.port() <= self.last && !st.used.contains(&next);
            if let Some(reserved) = free.then(|| UdpSocket::bind(next).ok()).flatten()
                && reserved.set_nonblocking(true).is_ok()
            {
                let token = loop {
                    let t = crate::runtime::seed::fresh_seed().to_le_bytes();
                    if !st.reserved.contains_key(&t) {
                        break t;
                    }
                };
                st.used.insert(next);
                st.reserved.insert(
                    token,
                    (
                        next,
                        reserved,
                        crate::runtime::clock::now() + RESERVATION_LIFETIME,
                    ),
                );
                return Ok((even, socket, token));
            }
            st.used.remove(&even);
        }
        Err(RelayError::Exhausted)
    }

    fn claim(&self, token: [u8; 8]) -> Option<(SocketAddr, UdpSocket)> {
        let mut st = lock(&self.state);
        let (addr, socket, until) = st.reserved.remove(&token)?;
        if until <= crate::runtime::clock::now() {
            st.used.remove(&addr);
            return None;
        }
        Some((addr, socket))
    }

    /// Binds a free port of the range on `ip` (even if asked), round robin so a port just
    /// released is not handed out again at once (late packets for the old allocation).
    fn bind(&self, ip: IpAddr, even: bool) -> Result<(SocketAddr, UdpSocket), RelayError> {
        self.bind_with(ip, even, |addr| {
            let s = UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
    }

    /// A TCP relay listener on a free port (RFC 6062 §5.1). `SO_REUSEPORT` lets the
    /// allocation's connections to peers leave from the same address (§5.2).
    fn bind_tcp(&self, ip: IpAddr) -> Result<(SocketAddr, TcpListener), RelayError> {
        self.bind_with(ip, false, |addr| {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.bind(&addr.into())?;
            s.listen(TCP_BACKLOG)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })
    }

    fn bind_with<S>(
        &self,
        ip: IpAddr,
        even: bool,
        bind: impl Fn(SocketAddr) -> std::io::Result<S>,
    ) -> Result<(SocketAddr, S), RelayError> {
        let mut st = lock(&self.state);
        if st.used.len() >= self.max.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(RelayError::Quota);
        }
        let span = u32::from(self.last - self.first) + 1;
        let mut tries = 0;
        for _ in 0..span {
            let port = st.next;
            st.next = if port >= self.last {
                self.first
            } else {
                port + 1
            };
            let addr = SocketAddr::new(ip, port);
            if (even && port % 2 == 1) || st.used.contains(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(s) => {
                    st.used.insert(addr);
                    return Ok((addr, s));
                }
                Err(_) => {
                    // Taken by another program: try the next, but not forever.
                    tries += 1;
                    if tries >= MAX_BIND_TRIES {
                        break;
                    }
                }
            }
        }
        Err(RelayError::Exhausted)
    }

    fn release(&self, addr: SocketAddr) {
        lock(&self.state).used.remove(&addr);
    }
}

/// One worker's relay sockets.
#[derive(Debug)]
pub struct RelaySockets {
    pool: Arc<PortPool>,
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
    sockets: HashMap<SocketAddr, UdpSocket>,
    /// TCP allocations' listeners (RFC 6062).
    listeners: HashMap<SocketAddr, TcpListener>,
    by_token: HashMap<u64, SocketAddr>,
    token_of: HashMap<SocketAddr, u64>,
    next_token: u64,
    /// Sockets bound since the worker last looked: it registers them for reading.
    fresh: Vec<(RawFd, u64)>,
}

/// Relay socket tokens start here, above the worker's STUN socket tokens.
pub const RELAY_TOKEN_BASE: u64 = 1 << 32;

impl RelaySockets {
    /// A worker's set, relaying from `ipv4` and/or `ipv6`.
    pub fn new(pool: Arc<PortPool>, ipv4: Option<IpAddr>, ipv6: Option<IpAddr>) -> Self {
        RelaySockets {
            pool,
            ipv4,
            ipv6,
            sockets: HashMap::new(),
            listeners: HashMap::new(),
            by_token: HashMap::new(),
            token_of: HashMap::new(),
            next_token: RELAY_TOKEN_BASE,
            fresh: Vec::new(),
        }
    }

    /// Sockets to register with the worker's poller since the last call.
    pub fn take_fresh(&mut self) -> Vec<(RawFd, u64)> {
        std::mem::take(&mut self.fresh)
    }

    /// The relay socket behind a poller token.
    pub fn by_token(&self, token: u64) -> Option<(SocketAddr, &UdpSocket)> {
        let addr = *self.by_token.get(&token)?;
        Some((addr, self.sockets.get(&addr)?))
    }

    /// The TCP relay listener behind a poller token.
    pub fn listener_by_token(&self, token: u64) -> Option<(SocketAddr, &TcpListener)> {
        let addr = *self.by_token.get(&token)?;
        Some((addr, self.listeners.get(&addr)?))
    }

    /// The relay socket bound to `addr`.
    pub fn get(&self, addr: SocketAddr) -> Option<&UdpSocket> {
        self.sockets.get(&addr)
    }
}

impl RelaySockets {
    fn ip(&self, family: AddressFamily) -> Result<IpAddr, RelayError> {
        match family {
            AddressFamily::V4 => self.ipv4,
            AddressFamily::V6 => self.ipv6,
        }
        .ok_or(RelayError::FamilyUnsupported)
    }

    fn adopt(&mut self, addr: SocketAddr, socket: UdpSocket) {
        self.watch(addr, socket.as_raw_fd());
        self.sockets.insert(addr, socket);
    }

    fn watch(&mut self, addr: SocketAddr, fd: RawFd) {
        let token = self.next_token;
        self.next_token += 1;
        self.fresh.push((fd, token));
        self.by_token.insert(token, addr);
        self.token_of.insert(addr, token);
    }
}

impl RelayPorts for RelaySockets {
    fn allocate(
        &mut self,
        family: AddressFamily,
        even_port: bool,
    ) -> Result<SocketAddr, RelayError> {
        let (addr, socket) = self.pool.bind(self.ip(family)?, even_port)?;
        self.adopt(addr, socket);
        Ok(addr)
    }

    fn allocate_reserving(
        &mut self,
        family: AddressFamily,
    ) -> Result<(SocketAddr, [u8; 8]), RelayError> {
        let (addr, socket, token) = self.pool.bind_pair(self.ip(family)?)?;
        self.adopt(addr, socket);
        Ok((addr, token))
    }

    fn claim(&mut self, token: [u8; 8]) -> Option<SocketAddr> {
        let (addr, socket) = self.pool.claim(token)?;
        self.adopt(addr, socket);
        Some(addr)
    }

    fn allocate_tcp(&mut self, family: AddressFamily) -> Result<SocketAddr, RelayError> {
        let (addr, listener) = self.pool.bind_tcp(self.ip(family)?)?;
        self.watch(addr, listener.as_raw_fd());
        self.listeners.insert(addr, listener);
        Ok(addr)
    }

    fn dont_fragment(&mut self, relayed: SocketAddr) -> bool {
        self.sockets
            .get(&relayed)
            .is_some_and(|s| farside_io::set_dont_fragment(s, relayed.is_ipv6()).is_ok())
    }

    fn release(&mut self, relayed: SocketAddr) {
        // Closing the socket also takes it out of the worker's epoll set.
        self.sockets.remove(&relayed);
        self.listeners.remove(&relayed);
        if let Some(t) = self.token_of.remove(&relayed) {
            self.by_token.remove(&t);
            self.fresh.retain(|(_, tok)| *tok != t);
        }
        self.pool.release(relayed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_in_the_range_round_robin_and_releases() {
        let base = 40000 + (std::process::id() % 1000) as u16 * 8;
        let pool = Arc::new(PortPool::new(base, base + 3, 100));
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut r = RelaySockets::new(Arc::clone(&pool), Some(lo), None);
        let a = r.allocate(AddressFamily::V4, false).expect("a port");
        let b = r.allocate(AddressFamily::V4, true).expect("an even port");
        assert!((base..=base + 3).contains(&a.port()));
        assert_eq!(b.port() % 2, 0);
        assert_eq!(r.take_fresh().len(), 2);
        assert_eq!(
            r.allocate(AddressFamily::V6, false),
            Err(RelayError::FamilyUnsupported)
        );
        r.release(a);
        assert_eq!(pool.in_use(), 1);
        // The range holds 4 ports; with b held, 3 more fit, then it is exhausted.
        let got: Vec<_> = (0..4)
            .map(|_| r.allocate(AddressFamily::V4, false))
            .collect();
        assert_eq!(got.iter().filter(|g| g.is_ok()).count(), 3, "{got:?}");
        assert_eq!(got[3], Err(RelayError::Exhausted));
    }

    #[test]
    fn reservations_hold_the_next_port_for_another_worker() {
        let base = 41000 + (std::process::id() % 1000) as u16 * 8;
        let pool = Arc::new(PortPool::new(base, base + 7, 100));
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut w1 = RelaySockets::new(Arc::clone(&pool), Some(lo), None);
        let mut w2 = RelaySockets::new(Arc::clone(&pool), Some(lo), None);
        let (even, token) = w1.allocate_reserving(AddressFamily::V4).expect("pair");
        assert_eq!(even.port() % 2, 0);
        assert_eq!(pool.in_use(), 2);
        let odd = w2.claim(token).expect("claimed by another worker");
        assert_eq!(odd.port(), even.port() + 1);
        assert!(w2.get(odd).is_some());
        assert_eq!(w2.claim(token), None, "once only");
        // An unclaimed reservation lapses.
        let (_, lapsing) = w1.allocate_reserving(AddressFamily::V4).expect("pair");
        pool.expire_reservations(crate::runtime::clock::now() + RESERVATION_LIFETIME);
        assert_eq!(w2.claim(lapsing), None);
        assert_eq!(pool.in_use(), 3);
    }
}
