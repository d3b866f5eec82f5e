//! The relay's port pairs: bound on demand from `rtp.ports`, watched on the media thread's
//! epoll (the RTP port's number is its token, RTCP's the next), closed when given back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use farside_io::Epoll;
use farside_media::relay::MediaPorts;

/// The bound pairs and where the next search starts.
pub struct PortPool {
    address: IpAddr,
    first: u16,
    last: u16,
    next: u16,
    /// By RTP port: the RTP and RTCP sockets.
    pub bound: HashMap<u16, [UdpSocket; 2]>,
}

impl PortPool {
    /// Pairs from `first` to `last` (RTP ports even) on `address`.
    pub fn new(address: IpAddr, first: u16, last: u16) -> PortPool {
        let first = first + (first & 1);
        PortPool {
            address,
            first,
            last,
            next: first,
            bound: HashMap::new(),
        }
    }

    /// The socket of relay port `port` (RTP or RTCP).
    pub fn socket(&self, port: u16) -> Option<&UdpSocket> {
        self.bound
            .get(&(port & !1))
            .map(|pair| &pair[usize::from(port & 1)])
    }
}

/// The pool with the epoll its sockets are watched on: what the relay core asks ports of.
pub struct Ports<'a> {
    /// The pool.
    pub pool: &'a mut PortPool,
    /// The media thread's epoll.
    pub epoll: &'a Epoll,
}

impl MediaPorts for Ports<'_> {
    fn take_pair(&mut self) -> Option<u16> {
        let p = &mut *self.pool;
        let pairs = usize::from((p.last - p.first) / 2);
        // One pass over the range from where the last search stopped: a pair another program
        // holds is skipped, not waited for.
        for _ in 0..=pairs {
            let rtp = p.next;
            p.next = if rtp + 3 > p.last { p.first } else { rtp + 2 };
            if p.bound.contains_key(&rtp) {
                continue;
            }
            let bind = |port| {
                let s = UdpSocket::bind(SocketAddr::new(p.address, port))?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            };
            let (Ok(a), Ok(b)) = (bind(rtp), bind(rtp + 1)) else {
                continue;
            };
            if self.epoll.add(a.as_raw_fd(), u64::from(rtp)).is_err()
                || self.epoll.add(b.as_raw_fd(), u64::from(rtp + 1)).is_err()
            {
                continue;
            }
            p.bound.insert(rtp, [a, b]);
            return Some(rtp);
        }
        None
    }

    fn give_back(&mut self, rtp_port: u16) {
        if let Some(pair) = self.pool.bound.remove(&rtp_port) {
            for s in &pair {
                let _ = self.epoll.remove(s.as_raw_fd());
            }
        }
    }
}
