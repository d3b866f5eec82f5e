//! The relay's port pairs: bound on demand from `rtp.ports` (each data-plane worker from its
//! own slice), watched on the worker's epoll (the RTP port's number is its token, RTCP's the
//! next), closed when given back.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use farside_io::Epoll;
use farside_media::relay::MediaPorts;

/// The bound pairs and where the next search starts.
pub struct PortPool {
    /// Where pairs are bound: the IPv4 address, the IPv6 one (each if configured).
    addresses: [Option<IpAddr>; 2],
    first: u16,
    /// The pair number (from `first`) the next search starts at.
    next: usize,
    /// By pair number from `first` ((RTP port - first) / 2): the RTP and RTCP sockets, so a
    /// packet's socket is found with an index.
    bound: Vec<Option<Pair>>,
    /// Pairs bound now.
    pairs: usize,
    /// Each socket's receive buffer, in bytes asked of the kernel.
    receive_buffer: usize,
    /// Overflows found (by [`PortPool::sweep`] or as a pair closed) and not yet taken.
    overflowed: u64,
}

impl PortPool {
    /// The pairs from `first` to `last` (RTP ports even) on `addresses`, split into `n`
    /// pools of consecutive pairs, as even as can be (one per data-plane worker; fewer if the
    /// range has fewer than `n` pairs).
    pub fn split(
        addresses: &[IpAddr],
        (first, last): (u16, u16),
        n: usize,
        receive_buffer: usize,
    ) -> Vec<PortPool> {
        let of = |ipv6: bool| addresses.iter().copied().find(|a| a.is_ipv6() == ipv6);
        let addresses = [of(false), of(true)];
        let first = first.saturating_add(first & 1);
        // Whole pairs only: an RTCP port past `last` is not the operator's to bind.
        let pairs = (usize::from(last) + 1).saturating_sub(usize::from(first)) / 2;
        let n = n.clamp(1, pairs.max(1));
        (0..n)
            .map(|k| {
                let (from, to) = (k * pairs / n, (k + 1) * pairs / n);
                PortPool {
                    addresses,
                    // In range: `from < pairs`, so `first + 2 * from <= last`.
                    first: u16::try_from(usize::from(first) + 2 * from).unwrap_or(u16::MAX),
                    next: 0,
                    bound: std::iter::repeat_with(|| None).take(to - from).collect(),
                    pairs: 0,
                    receive_buffer,
                    overflowed: 0,
                }
            })
            .collect()
    }

    /// The socket of relay port `port` (RTP or RTCP).
    pub fn socket(&self, port: u16) -> Option<&UdpSocket> {
        let pair = self.bound.get(self.index(port)?)?.as_ref()?;
        Some(&pair.sockets[usize::from(port & 1)])
    }

    /// Reads every bound socket's drop count (`SO_MEMINFO`): the datagrams the kernel
    /// dropped at a full receive buffer since the last sweep are added to what
    /// [`PortPool::take_overflowed`] gives. A sweep instead of a control message with every
    /// datagram (`SO_RXQ_OVFL`), which cost about 5 % of the relay's CPU under load.
    pub fn sweep(&mut self) {
        for pair in self.bound.iter_mut().flatten() {
            self.overflowed += pair.new_drops();
        }
    }

    /// The overflows found since the last call.
    pub fn take_overflowed(&mut self) -> u64 {
        std::mem::take(&mut self.overflowed)
    }

    /// Pairs bound now.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        self.bound.len()
    }

    fn index(&self, port: u16) -> Option<usize> {
        Some(usize::from(port.checked_sub(self.first)? / 2))
    }
}

/// A bound pair: the RTP and RTCP sockets, and the drop count each had at the last sweep.
struct Pair {
    sockets: [UdpSocket; 2],
    drops: [u64; 2],
}

impl Pair {
    /// Datagrams dropped at the pair's sockets since the last look.
    fn new_drops(&mut self) -> u64 {
        let mut new = 0;
        for (socket, seen) in self.sockets.iter().zip(&mut self.drops) {
            if let Ok(stats) = farside_io::socket_stats(socket) {
                new += stats.drops.saturating_sub(*seen);
                *seen = stats.drops;
            }
        }
        new
    }
}

/// The pool with the epoll its sockets are watched on: what the relay core asks ports of.
pub struct Ports<'a> {
    /// The pool.
    pub pool: &'a mut PortPool,
    /// The epoll of the worker the pool belongs to.
    pub epoll: &'a Epoll,
}

impl MediaPorts for Ports<'_> {
    fn take_pair(&mut self, ipv6: bool) -> Option<u16> {
        let p = &mut *self.pool;
        let [v4, v6] = p.addresses;
        let address = if ipv6 { v6.or(v4) } else { v4.or(v6) }?;
        // One pass over the range from where the last search stopped: a pair another program
        // holds is skipped, not waited for.
        for _ in 0..p.bound.len() {
            let i = p.next;
            p.next = (i + 1) % p.bound.len();
            if p.bound[i].is_some() {
                continue;
            }
            // In range: `first + 2 * i + 1 <= last`.
            let Some(rtp) = u16::try_from(2 * i).ok().map(|n| p.first + n) else {
                continue;
            };
            let bind = |port| {
                farside_io::bind_udp(
                    SocketAddr::new(address, port),
                    farside_io::SocketOptions {
                        reuse_port: false,
                        recv_buffer: p.receive_buffer,
                        send_buffer: p.receive_buffer,
                        packet_info: false,
                    },
                )
            };
            let (Ok(a), Ok(b)) = (bind(rtp), bind(rtp + 1)) else {
                continue;
            };
            if self.epoll.add_edge(a.as_raw_fd(), u64::from(rtp)).is_err()
                || self
                    .epoll
                    .add_edge(b.as_raw_fd(), u64::from(rtp + 1))
                    .is_err()
            {
                continue;
            }
            p.bound[i] = Some(Pair {
                sockets: [a, b],
                drops: [0; 2],
            });
            p.pairs += 1;
            return Some(rtp);
        }
        None
    }

    fn give_back(&mut self, rtp_port: u16) {
        let p = &mut *self.pool;
        let pair = p
            .index(rtp_port)
            .and_then(|i| p.bound.get_mut(i))
            .and_then(Option::take);
        if let Some(mut pair) = pair {
            p.pairs -= 1;
            // The last overflows, before the count goes with the sockets.
            p.overflowed += pair.new_drops();
            for s in &pair.sockets {
                let _ = self.epoll.remove(s.as_raw_fd());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slices(range: (u16, u16), n: usize) -> Vec<(u16, usize)> {
        let lo: IpAddr = "127.0.0.1".parse().expect("literal");
        PortPool::split(&[lo], range, n, 8192)
            .iter()
            .map(|p| (p.first, p.capacity()))
            .collect()
    }

    #[test]
    fn the_range_splits_into_whole_pairs_one_slice_per_worker() {
        // 5 pairs from 30000: 2 and 3.
        assert_eq!(slices((30_000, 30_009), 2), [(30_000, 2), (30_004, 3)]);
        // An odd first port starts at the next even one; a lone port at the end is no pair.
        assert_eq!(slices((30_001, 30_010), 1), [(30_002, 4)]);
        // More workers than pairs: one pair each.
        assert_eq!(slices((30_000, 30_003), 4), [(30_000, 1), (30_002, 1)]);
        // The top of the port space, without overflow.
        assert_eq!(slices((65_530, 65_535), 2), [(65_530, 1), (65_532, 2)]);
    }
}
