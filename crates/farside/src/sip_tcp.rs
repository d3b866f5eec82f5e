//! SIP over TCP (RFC 3261 §18.3) for the SIP thread: its listeners and connections, on the
//! thread's epoll. Each connection is a flow (RFC 5626): requests for a phone that registered
//! over it go back over it, and so do responses (§18.2.2). Messages are framed by
//! Content-Length ([`farside_sip::frame`]); a CRLF CRLF ping is answered with CRLF (RFC 5626
//! §4.4.1) and a CRLF pong is taken as a keep-alive answer. A stream that breaks the framing,
//! or a peer that stops reading while more than [`MAX_QUEUED`] bytes wait, is closed.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use farside_io::{Epoll, Interest};
use farside_sip::{Frame, frame};

/// Epoll tokens at and above this are the SIP thread's TCP listeners...
pub const LISTENER_TOKENS: u64 = 1 << 40;
/// ...and at and above this its TCP connections.
pub const CONNECTION_TOKENS: u64 = 1 << 41;

/// Bytes waiting for a peer that does not read, at most (then the connection is closed).
pub const MAX_QUEUED: usize = 1 << 20;

/// What a connection delivered.
#[derive(Debug)]
pub enum Inbound {
    /// A whole SIP message from `remote`, received at `local`.
    Message {
        /// The listener's address.
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
        /// The message.
        bytes: Vec<u8>,
    },
    /// A CRLF pong (the answer to our CRLF CRLF ping) or a ping we answered.
    Keepalive,
}

struct Connection {
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// The SIP thread's TCP side.
pub struct SipTcp {
    listeners: Vec<(SocketAddr, TcpListener)>,
    connections: HashMap<u64, Connection>,
    by_remote: HashMap<SocketAddr, u64>,
    next_id: u64,
    max_connections: usize,
}

impl SipTcp {
    /// Binds the listeners (IPv6 ones IPv6-only, as the STUN listeners).
    pub fn bind(addresses: &[SocketAddr], max_connections: usize) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        for &a in addresses {
            let l = crate::stun_tcp::bind_std(a)
                .map_err(|e| anyhow::anyhow!("S401 cannot bind SIP tcp {a}: {e:#}"))?;
            listeners.push((a, l));
        }
        Ok(SipTcp {
            listeners,
            connections: HashMap::new(),
            by_remote: HashMap::new(),
            next_id: 0,
            max_connections,
        })
    }

    /// The listeners' addresses.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners.iter().map(|(a, _)| *a)
    }

    /// Puts the listeners on `epoll`.
    pub fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        for (i, (_, l)) in self.listeners.iter().enumerate() {
            epoll.add(l.as_raw_fd(), LISTENER_TOKENS + i as u64)?;
        }
        Ok(())
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// Handles readiness of `token` (a listener or a connection); what arrived goes to `out`.
    pub fn ready(&mut self, epoll: &Epoll, token: u64, out: &mut Vec<Inbound>) {
        if token >= CONNECTION_TOKENS {
            self.serve(epoll, token - CONNECTION_TOKENS, out);
        } else if let Some(i) = token.checked_sub(LISTENER_TOKENS) {
            self.accept(epoll, i as usize);
        }
    }

    fn accept(&mut self, epoll: &Epoll, i: usize) {
        let Some((local, listener)) = self.listeners.get(i) else {
            return;
        };
        let local = *local;
        let mut accepted = Vec::new();
        for _ in 0..64 {
            match listener.accept() {
                Ok(c) => accepted.push(c),
                Err(_) => break,
            }
        }
        for (stream, remote) in accepted {
            if self.connections.len() >= self.max_connections {
                tracing::debug!("S413 SIP tcp connection from {remote} refused: at the limit");
                continue; // dropped: closed
            }
            let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let id = self.next_id;
            self.next_id += 1;
            if epoll
                .add(stream.as_raw_fd(), CONNECTION_TOKENS + id)
                .is_err()
            {
                continue;
            }
            // A newer connection from the same address (a NAT reusing a port) is the flow now.
            if let Some(&old) = self.by_remote.get(&remote) {
                self.close(epoll, old);
            }
            self.by_remote.insert(remote, id);
            self.connections.insert(
                id,
                Connection {
                    stream,
                    local,
                    remote,
                    input: Vec::new(),
                    output: Vec::new(),
                },
            );
        }
    }

    fn serve(&mut self, epoll: &Epoll, id: u64, out: &mut Vec<Inbound>) {
        let Some(c) = self.connections.get_mut(&id) else {
            return;
        };
        let mut closed = false;
        let mut buf = [0u8; 16 * 1024];
        // Read what is there (bounded per pass: the others get their turn).
        for _ in 0..16 {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => c.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut used = 0;
        loop {
            match frame(&c.input[used..]) {
                Frame::Incomplete => break,
                Frame::Ping(n) => {
                    used += n;
                    c.output.extend_from_slice(b"\r\n");
                    out.push(Inbound::Keepalive);
                }
                Frame::Pong(n) => {
                    used += n;
                    out.push(Inbound::Keepalive);
                }
                Frame::Message(n) => {
                    out.push(Inbound::Message {
                        local: c.local,
                        remote: c.remote,
                        bytes: c.input[used..used + n].to_vec(),
                    });
                    used += n;
                }
                Frame::Invalid => {
                    tracing::debug!(
                        "S414 SIP tcp connection from {} closed: the stream is not SIP",
                        c.remote
                    );
                    closed = true;
                    break;
                }
            }
        }
        c.input.drain(..used);
        if closed || !Self::flush(epoll, id, c) {
            self.close(epoll, id);
        }
    }

    /// Sends `bytes` over the connection from `remote`; false when there is none (the flow
    /// is gone) or it had to be closed.
    pub fn send(&mut self, epoll: &Epoll, remote: SocketAddr, bytes: &[u8]) -> bool {
        let Some(&id) = self.by_remote.get(&remote) else {
            return false;
        };
        let Some(c) = self.connections.get_mut(&id) else {
            return false;
        };
        c.output.extend_from_slice(bytes);
        if Self::flush(epoll, id, c) {
            true
        } else {
            self.close(epoll, id);
            false
        }
    }

    /// Writes what is queued; watches for writability while something is left. False when
    /// the connection failed or its peer let too much pile up.
    fn flush(epoll: &Epoll, id: u64, c: &mut Connection) -> bool {
        let had = !c.output.is_empty();
        let mut written = 0;
        while written < c.output.len() {
            match c.stream.write(&c.output[written..]) {
                Ok(0) => return false,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        c.output.drain(..written);
        if c.output.len() > MAX_QUEUED {
            return false;
        }
        if had {
            let interest = Interest {
                read: true,
                write: !c.output.is_empty(),
            };
            let _ = epoll.modify(c.stream.as_raw_fd(), CONNECTION_TOKENS + id, interest);
        }
        true
    }

    fn close(&mut self, epoll: &Epoll, id: u64) {
        if let Some(c) = self.connections.remove(&id) {
            let _ = epoll.remove(c.stream.as_raw_fd());
            if self.by_remote.get(&c.remote) == Some(&id) {
                self.by_remote.remove(&c.remote);
            }
        }
    }
}
