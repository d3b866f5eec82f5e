//! `epoll` for data-plane workers that own many sockets (TURN relay sockets: one per
//! allocation), where `poll` over a list would cost a pass over every socket per wake-up.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Most readiness events taken per wait.
const EVENTS: usize = 256;

/// What a socket is watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Readable (or closed by the other end).
    pub read: bool,
    /// Writable.
    pub write: bool,
}

impl Interest {
    /// Readability only.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
}

/// An epoll instance; sockets are registered with a caller-chosen `u64` token.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; a non-negative result is a new descriptor we now own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
        })
    }

    /// A second handle of the same instance, with its own event buffer: another thread adds
    /// and removes sockets through it while the owner waits.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Epoll {
            fd: self.fd.try_clone()?,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
        })
    }

    /// Watches `fd` for readability, reporting `token` (level-triggered).
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, Interest::READ)
    }

    /// Watches `fd` for readability, edge-triggered: `token` is reported when a datagram
    /// arrives, not again for what waits unread, so the owner reads until the queue is empty
    /// (or remembers that it did not). Saves the kernel re-checking every reported socket at
    /// the next wait, as level-triggered watching does.
    pub fn add_edge(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for what `interest` names, reporting `token` (level-triggered; errors and
    /// hang-ups are always reported).
    pub fn add_with(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    /// Changes what a watched `fd` is watched for: a stream stops reading while the other end
    /// of its splice is full, and watches for room to write while it has bytes queued.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut events = 0;
        if interest.read {
            events |= libc::EPOLLIN as u32;
        }
        if interest.write {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (closing a socket also does it).
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event is ignored for EPOLL_CTL_DEL.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` and calls `ready` with the token of each ready socket.
    pub fn wait(&mut self, timeout: Duration, mut ready: impl FnMut(u64)) -> io::Result<usize> {
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        let max = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` has room for `max` entries and lives across the call.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), max, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        for ev in &self.events[..n] {
            ready(ev.u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn reports_readable_sockets_by_token() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut ep = Epoll::new().expect("epoll");
        ep.add(a.as_raw_fd(), 7).expect("add");
        ep.add(b.as_raw_fd(), 9).expect("add");
        let mut seen = Vec::new();
        ep.wait(Duration::from_millis(10), |t| seen.push(t))
            .expect("wait");
        assert!(seen.is_empty());
        a.send_to(b"x", b.local_addr().expect("addr"))
            .expect("send");
        ep.wait(Duration::from_secs(2), |t| seen.push(t))
            .expect("wait");
        assert_eq!(seen, vec![9]);
        ep.remove(b.as_raw_fd()).expect("remove");
        seen.clear();
        ep.wait(Duration::from_millis(10), |t| seen.push(t))
            .expect("wait");
        assert!(seen.is_empty());
    }

    #[test]
    fn an_edge_triggered_socket_is_reported_once_per_arrival_and_a_clone_adds_to_the_same_set() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut ep = Epoll::new().expect("epoll");
        // Registered through another handle, reported by the owner's wait.
        ep.try_clone()
            .expect("clone")
            .add_edge(b.as_raw_fd(), 3)
            .expect("add");
        let to = b.local_addr().expect("addr");
        a.send_to(b"x", to).expect("send");
        let mut seen = Vec::new();
        ep.wait(Duration::from_secs(2), |t| seen.push(t))
            .expect("wait");
        assert_eq!(seen, vec![3]);
        // Left unread, it is not reported again (level-triggered would be)...
        seen.clear();
        ep.wait(Duration::from_millis(10), |t| seen.push(t))
            .expect("wait");
        assert!(seen.is_empty());
        // ...until another datagram arrives.
        a.send_to(b"y", to).expect("send");
        ep.wait(Duration::from_secs(2), |t| seen.push(t))
            .expect("wait");
        assert_eq!(seen, vec![3]);
    }
}
