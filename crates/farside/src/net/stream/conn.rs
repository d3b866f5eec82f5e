//! One accepted connection: its socket, TLS and WebSocket state, its buffers, and when it last
//! did something. Reading and writing never block; what the socket will not take waits in
//! `output`, bounded by the pool's limit.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use farside_io::{Epoll, Interest};
use farside_sip::websocket;
use farside_time::Timestamp;

use super::Kind;

/// Who a connection is, as the protocol shells see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The pool's id for it (and its epoll token).
    pub id: u64,
    /// The listener it came in at.
    pub local: SocketAddr,
    /// The peer.
    pub remote: SocketAddr,
    /// What the listener serves.
    pub kind: Kind,
}

/// How the bytes a connection delivers are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Messages, framed as the listener's protocol frames them.
    Framed,
    /// Bytes for someone else (an RFC 6062 data connection spliced to its peer): read into
    /// `input` and left there for the shell.
    Raw,
}

/// Why a connection was closed (each counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it, or the socket failed.
    Peer,
    /// Nothing read or written for the idle timeout, or output stuck that long.
    Idle,
    /// No whole message within the first-message timeout.
    FirstMessage,
    /// The TLS handshake did not finish in time.
    TlsHandshake,
    /// More output queued than the limit (a peer that does not read).
    Overflow,
    /// What it sent is not the protocol's framing (or breaks TLS or RFC 6455).
    Invalid,
    /// The shell closed it (a protocol decision).
    Shell,
}

/// One connection.
pub struct Conn {
    pub(super) meta: Meta,
    pub(super) stream: TcpStream,
    /// TLS: the server side for accepted connections, the client side for dialled ones.
    pub(super) tls: Option<Box<rustls::Connection>>,
    /// Farside opened it (to a phone's Contact) rather than accepted it.
    pub(super) dialled: bool,
    /// WebSocket listeners: the frame reader once the handshake is done.
    pub(super) ws: Option<websocket::Reader>,
    /// Bytes read and not yet used.
    pub input: Vec<u8>,
    /// Bytes waiting for the socket.
    pub output: Vec<u8>,
    pub(super) mode: Mode,
    pub(super) accepted: Timestamp,
    /// The last time bytes came in or went out.
    pub(super) active: Timestamp,
    /// The last time output made progress (or was empty).
    pub(super) drained: Timestamp,
    /// A whole message has arrived: the first-message timeout no longer applies.
    pub(super) greeted: bool,
    /// Counted against its address's share.
    pub(super) per_ip_counted: bool,
    /// Close once what is queued is written (a refused WebSocket handshake, a close frame).
    pub(super) closing: bool,
    /// Not read while set (its output, or its splice partner, is full).
    pub paused: bool,
    /// Raw mode: the peer is done sending; no more reads.
    pub ended: bool,
    /// Its output queue is past half the limit: not read until it drains.
    pub(super) backlogged: bool,
    /// The shell's own mark (the RFC 6062 peer connection it is spliced to).
    pub tag: Option<u64>,
    pub(super) interest: Interest,
}

/// What one read pass saw.
pub(super) struct Read {
    /// The connection ended or failed.
    pub closed: bool,
    /// Bytes arrived.
    pub got: bool,
    /// What arrived breaks the transport's own rules (not TLS): closed as invalid.
    pub invalid: bool,
    /// Why TLS refused it, when it did.
    pub tls_error: Option<rustls::Error>,
}

impl Conn {
    /// Whether bytes wait to be written (in `output`, or inside TLS).
    pub fn pending(&self) -> bool {
        !self.output.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads what the socket has (sixteen reads at most, so others get their turn) into
    /// `input`, stopping early once it holds more than `limit` bytes.
    pub(super) fn read(&mut self, scratch: &mut [u8], limit: usize) -> Read {
        if let Some(tls) = self.tls.as_mut() {
            let r = crate::net::tls_io::read_tls(
                tls,
                &mut self.stream,
                scratch,
                &mut self.input,
                limit,
            );
            return Read {
                closed: r.closed,
                got: r.got,
                invalid: r.invalid,
                tls_error: r.error,
            };
        }
        let mut got = false;
        for _ in 0..16 {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Read {
                        closed: true,
                        got,
                        invalid: false,
                        tls_error: None,
                    };
                }
                Ok(n) => {
                    got = true;
                    self.input.extend_from_slice(&scratch[..n]);
                    if self.input.len() > limit {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    return Read {
                        closed: true,
                        got,
                        invalid: false,
                        tls_error: None,
                    };
                }
            }
        }
        Read {
            closed: false,
            got,
            invalid: false,
            tls_error: None,
        }
    }

    /// Queues a message for the peer as its transport carries one (a WebSocket text frame).
    pub(super) fn queue(&mut self, bytes: &[u8]) {
        match self.meta.kind.is_websocket() {
            true => self.output.extend(websocket::frame(0x1, bytes)),
            false => self.output.extend_from_slice(bytes),
        }
    }

    /// Writes what is queued as far as the socket takes it; `true` if the connection is dead.
    pub fn flush(&mut self, now: Timestamp) -> bool {
        let before = self.output.len();
        let dead = self.write_out();
        if self.output.len() < before || !self.pending() {
            self.drained = now;
            if self.output.len() < before {
                self.active = now;
            }
        }
        dead
    }

    fn write_out(&mut self) -> bool {
        if let Some(tls) = self.tls.as_mut() {
            // rustls takes what fits its send buffer at a time; the rest waits in `output`
            // until the socket has taken what rustls holds.
            loop {
                if !self.output.is_empty() {
                    match tls.writer().write(&self.output) {
                        Ok(n) => {
                            self.output.drain(..n);
                        }
                        Err(_) => return true,
                    }
                }
                let mut blocked = false;
                while tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(0) => return true,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return true,
                    }
                }
                if blocked || self.output.is_empty() {
                    return false;
                }
            }
        }
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return true,
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Sets what epoll watches it for: reading unless paused or ended, writing while output
    /// waits. Watching for nothing takes it out of the set (errors and hang-ups would still be
    /// reported, and nobody would read them).
    pub fn watch(&mut self, epoll: &Epoll) {
        let want = Interest {
            read: !self.paused && !self.ended && !self.backlogged,
            write: self.pending(),
        };
        if want == self.interest {
            return;
        }
        let fd = self.stream.as_raw_fd();
        let token = self.meta.id;
        let none = Interest {
            read: false,
            write: false,
        };
        let done = if want == none {
            epoll.remove(fd)
        } else if self.interest == none {
            epoll.add_with(fd, token, want)
        } else {
            epoll.modify(fd, token, want)
        };
        if done.is_ok() {
            self.interest = want;
        }
    }

    /// Before it is dropped: shuts it for writing (a FIN after what it was sent) and reads what
    /// is waiting on it, so that the close does not answer unread bytes with a reset that
    /// throws away what the peer has not read yet.
    pub(super) fn linger(&mut self, scratch: &mut [u8]) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
        }
        let _ = self.write_out();
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        for _ in 0..16 {
            match self.stream.read(scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}
