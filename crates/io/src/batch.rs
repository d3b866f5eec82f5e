//! `recvmmsg(2)` / `sendmmsg(2)` over fixed, preallocated buffers.
//!
//! A batch owns all of its memory (buffers, iovecs, addresses, control messages, headers) up
//! front, so the hot path never allocates.
//!
//! Sockets bound to a wildcard address learn each datagram's destination address from
//! `IP_PKTINFO` / `IPV6_PKTINFO` ([`Datagram::destination`]) and answer from that same address
//! ([`SendBatch::push_from`]): on a host with several addresses the kernel's own choice of
//! source could be one the client never sent to, and NATs and ICE agents drop such answers. The `mmsghdr` array points into that memory, which is why a batch is
//! neither `Send` nor movable out of its box once built: construct it on the thread that uses it.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Room for one control message: an `in6_pktinfo` (20 bytes) plus its header, aligned as
/// `cmsghdr` requires.
const CONTROL_LEN: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

/// Storage for up to `capacity` datagrams of up to `buf_len` bytes each.
struct Slots {
    buf_len: usize,
    data: Box<[u8]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    headers: Box<[libc::mmsghdr]>,
}

impl Slots {
    fn new(capacity: usize, buf_len: usize) -> Box<Self> {
        let capacity = capacity.clamp(1, 1024);
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        let mut slots = Box::new(Slots {
            buf_len,
            data: vec![0u8; capacity * buf_len].into_boxed_slice(),
            iovecs: vec![zero_iov; capacity].into_boxed_slice(),
            addrs: vec![zero_addr; capacity].into_boxed_slice(),
            controls: vec![Control([0; CONTROL_LEN]); capacity].into_boxed_slice(),
            headers: vec![zero_hdr; capacity].into_boxed_slice(),
        });
        let Slots {
            data,
            iovecs,
            addrs,
            controls,
            headers,
            ..
        } = &mut *slots;
        for i in 0..capacity {
            iovecs[i].iov_base = data[i * buf_len..].as_mut_ptr().cast();
            iovecs[i].iov_len = buf_len;
            let hdr = &mut headers[i].msg_hdr;
            hdr.msg_iov = &mut iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_control = controls[i].0.as_mut_ptr().cast();
            hdr.msg_controllen = 0;
        }
        slots
    }

    fn capacity(&self) -> usize {
        self.headers.len()
    }

    fn buf(&self, i: usize) -> &[u8] {
        &self.data[i * self.buf_len..(i + 1) * self.buf_len]
    }

    fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * self.buf_len..(i + 1) * self.buf_len]
    }
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Where it came from.
    pub source: SocketAddr,
    /// The payload (at most the batch's buffer length).
    pub payload: &'a [u8],
    /// The datagram was longer than the buffer and was cut (`MSG_TRUNC`).
    pub truncated: bool,
    /// The address it was sent to, when the socket reports it (wildcard sockets opened with
    /// [`crate::SocketOptions`]'s `packet_info`).
    pub destination: Option<IpAddr>,
}

/// Preallocated buffers for `recvmmsg`.
pub struct RecvBatch {
    slots: Box<Slots>,
    count: usize,
}

// SAFETY: the raw pointers in the headers point only into buffers the batch owns on the heap
// (`Box<Slots>`), which move with it; nothing is shared, so another thread may own it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `capacity` datagrams of up to `buf_len` bytes each.
    pub fn new(capacity: usize, buf_len: usize) -> Self {
        RecvBatch {
            slots: Slots::new(capacity, buf_len),
            count: 0,
        }
    }

    /// How many datagrams the last receive filled.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The last receive filled nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th datagram of the last receive, or `None` past the end or when the kernel gave
    /// an address family we do not handle.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.count {
            return None;
        }
        let hdr = &self.slots.headers[i];
        let source = sockaddr_to_std(&self.slots.addrs[i])?;
        let len = (hdr.msg_len as usize).min(self.slots.buf_len);
        Some(Datagram {
            source,
            payload: &self.slots.buf(i)[..len],
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            destination: packet_info(&hdr.msg_hdr),
        })
    }

    /// Iterates over the datagrams of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.count).filter_map(|i| self.get(i))
    }
}

/// Receives as many datagrams as are queued, up to the batch's capacity, without blocking.
///
/// Returns the number received; `Ok(0)` when nothing was queued.
pub fn recv_batch(socket: &impl AsRawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    let slots = &mut *batch.slots;
    for hdr in slots.headers.iter_mut() {
        hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_hdr.msg_flags = 0;
        hdr.msg_hdr.msg_controllen = CONTROL_LEN as _;
        hdr.msg_len = 0;
    }
    let fd: RawFd = socket.as_raw_fd();
    // SAFETY: every header points into buffers owned by `slots`, which outlive the call;
    // `vlen` never exceeds the number of headers.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            slots.headers.as_mut_ptr(),
            slots.capacity() as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        batch.count = 0;
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(err),
        };
    }
    batch.count = n as usize;
    Ok(batch.count)
}

/// Preallocated buffers for `sendmmsg`: fill with [`SendBatch::push`], drain with [`send_batch`].
pub struct SendBatch {
    slots: Box<Slots>,
    count: usize,
}

impl SendBatch {
    /// A batch of `capacity` datagrams of up to `buf_len` bytes each.
    pub fn new(capacity: usize, buf_len: usize) -> Self {
        SendBatch {
            slots: Slots::new(capacity, buf_len),
            count: 0,
        }
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// No room for another datagram: flush first.
    pub fn is_full(&self) -> bool {
        self.count == self.slots.capacity()
    }

    /// Queues one datagram for `dest`, written by `fill` into a buffer of the batch's buffer
    /// length; `fill` returns how many bytes it wrote, or `None` to queue nothing.
    ///
    /// Returns `false` (and calls nothing) when the batch is full.
    pub fn push(
        &mut self,
        dest: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.push_to(Some(dest), None, fill)
    }

    /// Like [`SendBatch::push`], sent from `source`, one of the addresses a wildcard socket is
    /// bound to (`IP_PKTINFO` / `IPV6_PKTINFO`).
    pub fn push_from(
        &mut self,
        source: IpAddr,
        dest: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.push_to(Some(dest), Some(source), fill)
    }

    /// Like [`SendBatch::push`], for a connected socket: no destination address is passed, so
    /// the kernel reuses the socket's cached route instead of looking one up per datagram.
    pub fn push_connected(&mut self, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.push_to(None, None, fill)
    }

    fn push_to(
        &mut self,
        dest: Option<SocketAddr>,
        source: Option<IpAddr>,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.count;
        let Some(len) = fill(self.slots.buf_mut(i)) else {
            return true;
        };
        let len = len.min(self.slots.buf_len);
        // A zero name length makes the kernel ignore `msg_name` and use the socket's peer.
        let namelen = dest.map_or(0, |d| std_to_sockaddr(d, &mut self.slots.addrs[i]));
        self.slots.iovecs[i].iov_len = len;
        let hdr = &mut self.slots.headers[i].msg_hdr;
        hdr.msg_namelen = namelen;
        set_packet_info(hdr, source);
        self.count += 1;
        true
    }

    fn clear(&mut self) {
        self.count = 0;
    }
}

/// Sends every queued datagram of `batch` and empties it.
///
/// Returns how many were sent. A datagram the kernel refuses (e.g. an unreachable destination)
/// is skipped and counted as not sent; a full socket buffer drops the rest of the batch, as a
/// busy UDP server must rather than block.
pub fn send_batch(socket: &impl AsRawFd, batch: &mut SendBatch) -> usize {
    let fd = socket.as_raw_fd();
    let total = batch.count;
    let mut done = 0usize;
    let mut sent = 0usize;
    while done < total {
        let rest = &mut batch.slots.headers[done..total];
        // SAFETY: headers [done, total) point into buffers owned by the batch.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            done += n as usize;
            sent += n as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => break,
            // The first datagram failed on its own (bad destination, EPERM from a firewall...):
            // skip it and carry on with the others.
            _ => done += 1,
        }
    }
    // Restore full-length iovecs is not needed: `push` sets the length of each one it fills.
    batch.clear();
    sent
}

/// The destination address from an `IP_PKTINFO` / `IPV6_PKTINFO` control message, if any.
fn packet_info(hdr: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: `hdr` was filled by the kernel: its control pointer and length describe a valid
    // control buffer of ours, which the CMSG_* macros walk within bounds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let (level, typ) = ((*c).cmsg_level, (*c).cmsg_type);
            let data = libc::CMSG_DATA(c);
            if level == libc::IPPROTO_IP && typ == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                return Some(IpAddr::from(
                    u32::from_be(info.ipi_addr.s_addr).to_be_bytes(),
                ));
            }
            if level == libc::IPPROTO_IPV6 && typ == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                return Some(IpAddr::from(info.ipi6_addr.s6_addr));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Writes (or clears) the control message that picks the source address of a datagram.
fn set_packet_info(hdr: &mut libc::msghdr, source: Option<IpAddr>) {
    let Some(source) = source else {
        hdr.msg_controllen = 0;
        return;
    };
    // SAFETY: `msg_control` points at this slot's CONTROL_LEN-byte, 8-aligned buffer, which
    // holds one cmsghdr plus an in_pktinfo (12 bytes) or in6_pktinfo (20 bytes).
    unsafe {
        let (level, typ, len) = match source {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                mem::size_of::<libc::in_pktinfo>(),
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                mem::size_of::<libc::in6_pktinfo>(),
            ),
        };
        hdr.msg_controllen = libc::CMSG_SPACE(len as u32) as _;
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = level;
        (*c).cmsg_type = typ;
        (*c).cmsg_len = libc::CMSG_LEN(len as u32) as _;
        let data = libc::CMSG_DATA(c);
        match source {
            IpAddr::V4(ip) => std::ptr::write_unaligned(
                data.cast(),
                libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                },
            ),
            IpAddr::V6(ip) => std::ptr::write_unaligned(
                data.cast(),
                libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                },
            ),
        }
    }
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = u32::from_be(sin.sin_addr.s_addr);
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip.into(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            sin.sin_zero = [0; 8];
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6: &mut libc::sockaddr_in6 =
                unsafe { &mut *(ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn batch_round_trip_over_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let b_addr = b.local_addr().expect("addr");
        let mut out = SendBatch::new(8, 64);
        for i in 0..5u8 {
            assert!(out.push(b_addr, |buf| {
                buf[..3].copy_from_slice(&[i, i, i]);
                Some(3)
            }));
        }
        assert_eq!(send_batch(&a, &mut out), 5);
        assert!(out.is_empty());

        let mut inb = RecvBatch::new(8, 64);
        let mut got = Vec::new();
        for _ in 0..100 {
            recv_batch(&b, &mut inb).expect("recv");
            got.extend(
                inb.iter()
                    .map(|d| (d.source, d.payload.to_vec(), d.truncated)),
            );
            if got.len() == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got.len(), 5);
        for (i, (src, payload, truncated)) in got.iter().enumerate() {
            assert_eq!(*src, a.local_addr().expect("addr"));
            assert_eq!(payload, &vec![i as u8; 3]);
            assert!(!truncated);
        }
    }

    #[test]
    fn connected_batch_goes_to_the_peer() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        let mut out = SendBatch::new(4, 16);
        for _ in 0..3 {
            assert!(out.push_connected(|buf| {
                buf[0] = 9;
                Some(1)
            }));
        }
        assert_eq!(send_batch(&a, &mut out), 3);
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        for _ in 0..3 {
            let mut buf = [0u8; 4];
            let (n, from) = b.recv_from(&mut buf).expect("datagram");
            assert_eq!((n, buf[0], from), (1, 9, a.local_addr().expect("addr")));
        }
    }

    #[test]
    fn oversized_datagram_is_flagged_truncated() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
        a.send_to(&[7u8; 100], b.local_addr().expect("addr"))
            .expect("send");
        let mut inb = RecvBatch::new(2, 16);
        for _ in 0..100 {
            if recv_batch(&b, &mut inb).expect("recv") > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let d = inb.get(0).expect("one datagram");
        assert!(d.truncated);
        assert_eq!(d.payload.len(), 16);
    }

    #[test]
    fn wildcard_sockets_learn_the_destination_and_answer_from_it() {
        use crate::{SocketOptions, bind_udp};
        let opts = SocketOptions {
            reuse_port: false,
            ..SocketOptions::default()
        };
        let server = bind_udp("0.0.0.0:0".parse().expect("addr"), opts).expect("bind");
        let port = server.local_addr().expect("addr").port();
        for dest_ip in ["127.0.0.1", "127.0.0.3"] {
            let client = UdpSocket::bind("127.0.0.1:0").expect("client");
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let dest: SocketAddr = format!("{dest_ip}:{port}").parse().expect("addr");
            client.send_to(b"ping", dest).expect("send");
            let mut inb = RecvBatch::new(4, 64);
            for _ in 0..200 {
                if recv_batch(&server, &mut inb).expect("recv") > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let d = inb.get(0).expect("datagram");
            assert_eq!(d.destination, Some(dest.ip()));
            let mut out = SendBatch::new(4, 64);
            assert!(out.push_from(dest.ip(), d.source, |buf| {
                buf[..4].copy_from_slice(b"pong");
                Some(4)
            }));
            assert_eq!(send_batch(&server, &mut out), 1);
            let mut buf = [0u8; 8];
            let (n, from) = client.recv_from(&mut buf).expect("answer");
            assert_eq!(
                (&buf[..n], from),
                (&b"pong"[..], dest),
                "answer must leave from {dest}"
            );
        }
    }

    #[test]
    fn sockaddr_conversion_round_trips() {
        // SAFETY: all-zero sockaddr_storage is valid.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        for addr in [
            "192.0.2.7:3478".parse::<SocketAddr>().expect("v4"),
            "[2001:db8::7]:5349".parse().expect("v6"),
        ] {
            std_to_sockaddr(addr, &mut ss);
            assert_eq!(sockaddr_to_std(&ss), Some(addr));
        }
    }
}
