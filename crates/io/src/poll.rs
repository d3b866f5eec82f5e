//! Waiting for any of a few sockets to become readable.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// The most sockets one wait can watch (a STUN worker has at most four per listen address).
pub const MAX_FDS: usize = 64;

/// Blocks until one of `fds` is readable or `timeout` passes.
///
/// Returns a bitmask: bit `i` is set when `fds[i]` is readable (or has an error pending,
/// which the next receive will report). Zero means the timeout passed.
pub fn wait_readable(fds: &[RawFd], timeout: Duration) -> io::Result<u64> {
    let n = fds.len().min(MAX_FDS);
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_FDS];
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfds` holds `n` initialised entries and lives across the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::Interrupted => Ok(0),
            _ => Err(err),
        };
    }
    let mut mask = 0u64;
    for (i, p) in pfds[..n].iter().enumerate() {
        if p.revents != 0 {
            mask |= 1 << i;
        }
    }
    Ok(mask)
}
