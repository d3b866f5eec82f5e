//! Binding listeners.

use std::net::SocketAddr;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking TCP listener; IPv6 listeners are IPv6-only so `[::]` and `0.0.0.0` coexist.
pub fn tcp_listener(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("S102 cannot bind TCP {addr}"))?;
    s.listen(1024)?;
    Ok(s.into())
}
