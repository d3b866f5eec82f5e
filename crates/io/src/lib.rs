//! Farside's UDP I/O layer: batched receive and send (`recvmmsg`/`sendmmsg`), readiness waits,
//! socket options, the kernel's per-socket drop counter and the host's interface addresses.
//!
//! This is the only crate of the workspace with `unsafe` code. Everything here is plain
//! plumbing: no protocol decisions are made in this crate.

#![cfg(target_os = "linux")]

mod batch;
mod epoll;
mod interfaces;
mod poll;
mod random;
mod socket;

pub use batch::{Datagram, RecvBatch, SendBatch, recv_batch, recv_batch_waiting, send_batch};
pub use epoll::{Epoll, Interest};
pub use interfaces::{InterfaceAddress, interface_addresses};
pub use poll::{MAX_FDS, wait_readable};
pub use random::random_bytes;
pub use socket::{
    SocketOptions, UdpSocketStats, bind_udp, raise_fd_limit, set_dont_fragment, socket_stats,
};
