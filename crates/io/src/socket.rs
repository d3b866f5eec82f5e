//! Opening UDP sockets the way a busy server wants them, and reading the kernel's counters.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Options for [`bind_udp`].
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// `SO_REUSEPORT`, so that each worker thread can own a socket on the same address and
    /// the kernel spreads flows across them.
    pub reuse_port: bool,
    /// Requested receive buffer in bytes. As root `SO_RCVBUFFORCE` lifts the
    /// `net.core.rmem_max` cap; otherwise the kernel clamps the request silently.
    pub recv_buffer: usize,
    /// Requested send buffer in bytes (same rules as `recv_buffer`).
    pub send_buffer: usize,
    /// Report each datagram's destination address (`IP_PKTINFO` / `IPV6_RECVPKTINFO`). Done
    /// for wildcard addresses whatever this says, where the answer must leave from the address
    /// the request was sent to.
    pub packet_info: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            reuse_port: true,
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
            packet_info: false,
        }
    }
}

/// Binds a non-blocking UDP socket on `addr`. An IPv6 socket is IPv6-only, so that `[::]`
/// and `0.0.0.0` can be bound side by side on one port.
pub fn bind_udp(addr: SocketAddr, opts: SocketOptions) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(opts.reuse_port)?;
    set_buffer(&socket, libc::SO_RCVBUFFORCE, opts.recv_buffer, |s, n| {
        s.set_recv_buffer_size(n)
    });
    set_buffer(&socket, libc::SO_SNDBUFFORCE, opts.send_buffer, |s, n| {
        s.set_send_buffer_size(n)
    });
    if opts.packet_info || addr.ip().is_unspecified() {
        let (level, name) = match addr {
            SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO),
            SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        };
        set_int(&socket, level, name, 1)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn set_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and a pointer to a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Tries the privileged `*FORCE` option first, then the ordinary one (clamped by sysctl).
/// Failing both is not fatal: the socket works, just with the default buffer.
fn set_buffer(
    socket: &Socket,
    force_opt: libc::c_int,
    bytes: usize,
    fallback: impl Fn(&Socket, usize) -> io::Result<()>,
) {
    if bytes == 0 {
        return;
    }
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if set_int(socket, libc::SOL_SOCKET, force_opt, val).is_err() {
        let _ = fallback(socket, bytes);
    }
}

/// What the kernel says about one socket (`SO_MEMINFO`, `SO_RCVBUF`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpSocketStats {
    /// Datagrams the kernel dropped for this socket since it was opened (receive buffer full,
    /// checksum errors, ...): `SK_MEMINFO_DROPS`.
    pub drops: u64,
    /// Bytes queued in the receive buffer now.
    pub recv_queued: u64,
    /// The effective receive buffer size in bytes (the kernel doubles what was asked for).
    pub recv_buffer: u64,
}

/// Reads the kernel's counters for `socket`.
pub fn socket_stats(socket: &impl AsRawFd) -> io::Result<UdpSocketStats> {
    // SK_MEMINFO_VARS is 9 on every kernel since 4.x; ask for a few more in case it grows.
    let mut meminfo = [0u32; 16];
    let mut len = mem::size_of_val(&meminfo) as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for the call; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            meminfo.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Indices from linux/sock_diag.h: RMEM_ALLOC = 0, RCVBUF = 1, DROPS = 8.
    Ok(UdpSocketStats {
        recv_queued: u64::from(meminfo[0]),
        recv_buffer: u64::from(meminfo[1]),
        drops: u64::from(meminfo[8]),
    })
}

/// Raises this process's open-file limit to its hard limit (a TURN server holds one socket per
/// allocation) and returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of both calls.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Sets the "don't fragment" behaviour of a UDP socket (`IP_MTU_DISCOVER` / `IPV6_MTU_DISCOVER`
/// = `PMTUDISC_DO`): datagrams leave with DF set (IPv4) and are never fragmented by this host;
/// one larger than the path MTU fails to send instead (TURN's DONT-FRAGMENT, RFC 8656 §14.8).
pub fn set_dont_fragment(socket: &std::net::UdpSocket, ipv6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if ipv6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: `value` is a c_int that lives across the call; the length says so.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_reuseport_sockets_share_an_address() {
        let a = bind_udp(
            "127.0.0.1:0".parse().expect("addr"),
            SocketOptions::default(),
        )
        .expect("first bind");
        let addr = a.local_addr().expect("local addr");
        let b = bind_udp(addr, SocketOptions::default()).expect("second bind, same port");
        assert_eq!(b.local_addr().expect("local addr"), addr);
    }

    #[test]
    fn stats_report_the_receive_buffer() {
        let opts = SocketOptions {
            recv_buffer: 1 << 20,
            ..SocketOptions::default()
        };
        let s = bind_udp("127.0.0.1:0".parse().expect("addr"), opts).expect("bind");
        let stats = socket_stats(&s).expect("SO_MEMINFO");
        assert_eq!(stats.drops, 0);
        assert!(stats.recv_buffer > 0);
    }

    #[test]
    fn overflowing_a_socket_counts_drops() {
        let opts = SocketOptions {
            recv_buffer: 4096,
            reuse_port: false,
            ..SocketOptions::default()
        };
        let rx = bind_udp("127.0.0.1:0".parse().expect("addr"), opts).expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let dest = rx.local_addr().expect("addr");
        for _ in 0..2000 {
            let _ = tx.send_to(&[0u8; 512], dest);
        }
        let stats = socket_stats(&rx).expect("SO_MEMINFO");
        assert!(stats.drops > 0, "no drops counted: {stats:?}");
    }

    #[test]
    fn dont_fragment_is_set() {
        use std::os::fd::AsRawFd;
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        super::set_dont_fragment(&s, false).expect("set");
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` live across the call and describe a c_int.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                std::ptr::from_mut(&mut v).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(v, libc::IP_PMTUDISC_DO);
    }
}
