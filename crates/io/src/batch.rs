//! `recvmmsg(2)` / `sendmmsg(2)` over fixed, preallocated buffers.
//!
//! A batch owns all of its memory (buffers, iovecs, addresses, control messages, headers) up
//! front, so the hot path never allocates.
//!
//! Sockets bound to a wildcard address learn each datagram's destination address from
//! `IP_PKTINFO` / `IPV6_PKTINFO` ([`Datagram::destination`]) and answer from that same address
//! ([`SendBatch::push_from`]): on a host with several addresses the kernel's own choice of
//! source could be one the client never sent to, and NATs and ICE agents drop such answers. The `mmsghdr` array points into that memory, which lives in a `Box`
//! so that moving a batch (to the thread that uses it) leaves those pointers valid.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Room for the control messages of one datagram: an `in6_pktinfo` (20 bytes) and a
/// `UDP_SEGMENT` size (2 bytes), each with its header, aligned as `cmsghdr` requires.
const CONTROL_LEN: usize = 64;

/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS` before Linux 6.9).
const MAX_SEGMENTS: usize = 64;

/// Largest segment coalesced: a segment must fit the path MTU whole, or the kernel refuses
/// the send; 1232 bytes fit IPv6's minimum MTU (1280) after the IPv6 and UDP headers.
const MAX_SEGMENT_LEN: usize = 1232;

/// Most bytes in one segmented send (UDP's 65,507-byte payload limit, with room to spare).
const MAX_SEGMENTED_LEN: usize = 65_000;

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
        let destination = destination(&hdr.msg_hdr);
        Some(Datagram {
            source,
            payload: &self.slots.buf(i)[..len],
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            destination,
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
    recv_batch_with(socket, batch, libc::MSG_DONTWAIT)
}

/// As [`recv_batch`], but waits for the first datagram (as long as the socket's receive
/// timeout, `SO_RCVTIMEO`, allows), then takes what else is queued: a thread with one socket
/// to watch waits here instead of in `epoll_wait`, one system call per wake-up instead of two.
pub fn recv_batch_waiting(socket: &impl AsRawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    recv_batch_with(socket, batch, libc::MSG_WAITFORONE)
}

fn recv_batch_with(
    socket: &impl AsRawFd,
    batch: &mut RecvBatch,
    flags: libc::c_int,
) -> io::Result<usize> {
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
            flags | libc::MSG_TRUNC,
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
///
/// With [`SendBatch::with_segmentation`], consecutive datagrams of one size for one destination
/// share a slot and leave as one segmented send (`UDP_SEGMENT`, Linux 4.18): the kernel builds
/// and routes one buffer for the run and cuts it into the datagrams on the way out, instead of
/// doing all of that once per datagram. The receiver gets the same datagrams either way.
pub struct SendBatch {
    slots: Box<Slots>,
    /// Slots in use.
    count: usize,
    /// Datagrams queued (a segmented slot holds several).
    datagrams: usize,
    /// Per slot: what it holds.
    runs: Box<[Run]>,
    segmentation: bool,
}

// SAFETY: as for RecvBatch: the headers point only into the batch's own heap buffers, which
// move with it; nothing is shared.
unsafe impl Send for SendBatch {}

/// The datagrams queued in one slot: `segments` of `segment` bytes, the last maybe shorter.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    dest: Option<SocketAddr>,
    source: Option<IpAddr>,
    segment: usize,
    segments: usize,
    len: usize,
    /// Bytes of control messages before the `UDP_SEGMENT` one (the source address).
    control: usize,
}

impl SendBatch {
    /// A batch of `capacity` datagrams of up to `buf_len` bytes each.
    pub fn new(capacity: usize, buf_len: usize) -> Self {
        let slots = Slots::new(capacity, buf_len);
        let runs = vec![Run::default(); slots.capacity()].into_boxed_slice();
        SendBatch {
            slots,
            count: 0,
            datagrams: 0,
            runs,
            segmentation: false,
        }
    }

    /// The same batch, coalescing runs of datagrams for one destination into segmented sends
    /// (as many as fit a slot's `buf_len`, at most 64). If the kernel refuses a segmented send
    /// (an old kernel, an IPsec route), [`send_batch`] sends that run one datagram at a time
    /// and the batch stops coalescing ([`SendBatch::segmenting`]).
    pub fn with_segmentation(mut self) -> Self {
        self.segmentation = true;
        self
    }

    /// Whether the batch still coalesces runs into segmented sends.
    pub fn segmenting(&self) -> bool {
        self.segmentation
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
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
        self.datagrams += 1;
        if self.join_last_run(i, dest, source, len) {
            return true;
        }
        // A zero name length makes the kernel ignore `msg_name` and use the socket's peer.
        let namelen = dest.map_or(0, |d| std_to_sockaddr(d, &mut self.slots.addrs[i]));
        self.slots.iovecs[i].iov_len = len;
        let hdr = &mut self.slots.headers[i].msg_hdr;
        hdr.msg_namelen = namelen;
        set_packet_info(hdr, source);
        #[allow(clippy::unnecessary_cast)] // msg_controllen is a u32 on musl
        let control = hdr.msg_controllen as usize;
        self.runs[i] = Run {
            dest,
            source,
            segment: len,
            segments: 1,
            len,
            control,
        };
        self.count += 1;
        true
    }

    /// Moves the datagram just written to slot `i` onto the end of the run in slot `i - 1`
    /// when it can follow it in one segmented send: same addresses, no longer than the run's
    /// segment (only the last segment may be shorter), and room left.
    fn join_last_run(
        &mut self,
        i: usize,
        dest: Option<SocketAddr>,
        source: Option<IpAddr>,
        len: usize,
    ) -> bool {
        if !self.segmentation || i == 0 || len == 0 {
            return false;
        }
        let run = self.runs[i - 1];
        let fits = run.dest == dest
            && run.source == source
            && len <= run.segment
            && run.segment <= MAX_SEGMENT_LEN
            && run.len == run.segment * run.segments
            && run.segments < MAX_SEGMENTS
            && run.len + len <= self.slots.buf_len.min(MAX_SEGMENTED_LEN);
        if !fits {
            return false;
        }
        let buf_len = self.slots.buf_len;
        let from = i * buf_len;
        let to = (i - 1) * buf_len + run.len;
        self.slots.data.copy_within(from..from + len, to);
        let run = &mut self.runs[i - 1];
        run.segments += 1;
        run.len += len;
        self.slots.iovecs[i - 1].iov_len = run.len;
        if run.segments == 2 {
            let segment = run.segment as u16;
            let control = run.control;
            set_segment_size(&mut self.slots, i - 1, control, segment);
        }
        true
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.count = 0;
        self.datagrams = 0;
    }
}

/// Appends a `UDP_SEGMENT` control message after the first `control` bytes of slot `i`'s.
fn set_segment_size(slots: &mut Slots, i: usize, control: usize, segment: u16) {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(control + space <= CONTROL_LEN);
    let hdr = &mut slots.headers[i].msg_hdr;
    // SAFETY: `control` is a multiple of the cmsg alignment (it is a CMSG_SPACE or 0) and
    // `control + space` fits the slot's CONTROL_LEN-byte, 8-aligned buffer.
    unsafe {
        let c = slots.controls[i].0.as_mut_ptr().add(control);
        let header = libc::cmsghdr {
            cmsg_len: libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _,
            cmsg_level: libc::SOL_UDP,
            cmsg_type: libc::UDP_SEGMENT,
        };
        std::ptr::write_unaligned(c.cast::<libc::cmsghdr>(), header);
        let data = c.add(libc::CMSG_LEN(0) as usize);
        std::ptr::write_unaligned(data.cast::<u16>(), segment);
    }
    hdr.msg_controllen = (control + space) as _;
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
            let n = n as usize;
            sent += batch.runs[done..done + n]
                .iter()
                .map(|r| r.segments)
                .sum::<usize>();
            done += n;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => break,
            // A segmented send the kernel will not take (EIO: an IPsec route; EINVAL: a segment
            // over the route's MTU, or a kernel without UDP_SEGMENT): its datagrams go one at
            // a time, and this batch segments no more.
            _ if batch.runs[done].segments > 1 => {
                batch.segmentation = false;
                sent += send_one_by_one(fd, &mut batch.slots, &batch.runs[done], done);
                done += 1;
            }
            // The first datagram failed on its own (bad destination, EPERM from a firewall...):
            // skip it and carry on with the others.
            _ => done += 1,
        }
    }
    // Restore full-length iovecs is not needed: `push` sets the length of each one it fills.
    batch.clear();
    sent
}

/// Sends the datagrams of segmented slot `i` one `sendmsg` each; returns how many went.
fn send_one_by_one(fd: RawFd, slots: &mut Slots, run: &Run, i: usize) -> usize {
    let base = slots.iovecs[i].iov_base.cast::<u8>();
    let mut hdr = slots.headers[i].msg_hdr;
    hdr.msg_controllen = run.control as _;
    let mut sent = 0;
    let mut at = 0;
    while at < run.len {
        let len = run.segment.min(run.len - at);
        let mut iov = libc::iovec {
            // SAFETY: `at + len <= run.len`, within the slot's buffer.
            iov_base: unsafe { base.add(at) }.cast(),
            iov_len: len,
        };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        // SAFETY: `hdr` points at the slot's address and control buffers and at `iov`, all
        // alive for the call.
        if unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) } >= 0 {
            sent += 1;
        }
        at += len;
    }
    sent
}

/// A received datagram's destination address, from its control messages (an `IP_PKTINFO` /
/// `IPV6_PKTINFO` message).
fn destination(hdr: &libc::msghdr) -> Option<IpAddr> {
    let mut destination = None;
    if hdr.msg_controllen == 0 {
        return destination;
    }
    // SAFETY: `hdr` was filled by the kernel: its control pointer and length describe a valid
    // control buffer of ours, which the CMSG_* macros walk within bounds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let (level, typ) = ((*c).cmsg_level, (*c).cmsg_type);
            let data = libc::CMSG_DATA(c);
            if level == libc::IPPROTO_IP && typ == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                destination = Some(IpAddr::from(
                    u32::from_be(info.ipi_addr.s_addr).to_be_bytes(),
                ));
            } else if level == libc::IPPROTO_IPV6 && typ == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                destination = Some(IpAddr::from(info.ipi6_addr.s6_addr));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    destination
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
    fn runs_for_one_destination_leave_as_segmented_sends_and_arrive_as_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let c = UdpSocket::bind("127.0.0.1:0").expect("bind c");
        let (b_addr, c_addr) = (b.local_addr().expect("b"), c.local_addr().expect("c"));
        let mut out = SendBatch::new(8, 4096).with_segmentation();
        // Ten of 100 bytes and a shorter last one: one slot. Then one of 100 after the short
        // one (a new slot: only the last segment may be short), one for another destination,
        // and one longer than the run's segment.
        let plan: Vec<(SocketAddr, usize)> = (0..10)
            .map(|_| (b_addr, 100))
            .chain([(b_addr, 50), (b_addr, 100), (c_addr, 100), (c_addr, 300)])
            .collect();
        for (k, &(to, len)) in plan.iter().enumerate() {
            assert!(out.push(to, |buf| {
                buf[..len].fill(k as u8);
                Some(len)
            }));
        }
        assert_eq!(
            (out.len(), out.count),
            (14, 4),
            "datagrams and slots queued"
        );
        assert_eq!(send_batch(&a, &mut out), 14);
        assert!(out.segmenting(), "loopback takes segmented sends");

        for (socket, addr) in [(&b, b_addr), (&c, c_addr)] {
            let want: Vec<Vec<u8>> = plan
                .iter()
                .enumerate()
                .filter(|(_, (to, _))| *to == addr)
                .map(|(k, &(_, len))| vec![k as u8; len])
                .collect();
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < want.len() {
                let n = socket.recv(&mut buf).expect("datagram");
                got.push(buf[..n].to_vec());
            }
            assert_eq!(got, want, "datagrams at {addr}, in order and whole");
        }
    }

    #[test]
    fn a_segmented_send_the_kernel_refuses_goes_one_datagram_at_a_time() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
        // SO_NO_CHECK (asm-generic/socket.h: 11): UDP without checksums, with which the
        // kernel refuses segmented sends (EINVAL).
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                11,
                (&one as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_NO_CHECK");
        let to = b.local_addr().expect("b");
        let mut out = SendBatch::new(8, 4096).with_segmentation();
        for k in 0..5u8 {
            assert!(out.push(to, |buf| {
                buf[..64].fill(k);
                Some(64)
            }));
        }
        assert_eq!(out.count, 1, "one segmented slot");
        assert_eq!(send_batch(&a, &mut out), 5, "every datagram still went");
        assert!(!out.segmenting(), "and the batch stopped segmenting");
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 128];
        for k in 0..5u8 {
            let n = b.recv(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], &[k; 64][..]);
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
