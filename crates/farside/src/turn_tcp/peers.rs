//! TCP allocations' connections with peers (RFC 6062): connecting out for Connect, accepting
//! on relay listeners, and splicing each to its client data connection once bound. The core
//! decides who may connect and when to give up; this only moves bytes, with backpressure: a
//! side is not read while the other side has [`MAX_QUEUED`] bytes waiting.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use farside_io::Interest;
use farside_turn::{ConnectionId, Notice, Transmit};

use super::{MAX_QUEUED, PEER_TOKEN_BASE, TcpTurn};

/// Reads from one peer per pass, at most.
const READS_PER_PASS: usize = 16;

/// One TCP connection between a relayed address and a peer.
pub(super) struct Peer {
    stream: TcpStream,
    id: ConnectionId,
    /// Connecting out for a Connect; not yet readable.
    connecting: bool,
    /// Bytes for the peer.
    outbuf: Vec<u8>,
    /// Bytes from the peer before the client bound a data connection (RFC 6062 §5.3: they
    /// must be kept).
    held: Vec<u8>,
    /// The client data connection's token, once bound.
    client: Option<u64>,
    paused: bool,
    interest: Interest,
}

impl TcpTurn {
    /// Connect (RFC 6062 §5.2): a non-blocking connection from the relayed address to `peer`.
    pub(super) fn start_connect(
        &mut self,
        now: Instant,
        id: ConnectionId,
        relayed: SocketAddr,
        peer: SocketAddr,
    ) {
        let stream = match connect_from(relayed, peer) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("S308 TCP relay connection {relayed} -> {peer} failed: {e}");
                self.connect_done(now, id, false);
                return;
            }
        };
        let connecting = Interest {
            read: true,
            write: true,
        };
        if self.watch_peer(stream, id, true, connecting).is_none() {
            self.connect_done(now, id, false);
        }
    }

    /// A peer connected to a TCP allocation's relayed address (RFC 6062 §5.3).
    pub(super) fn accept_peers(&mut self, now: Instant, token: u64) {
        let mut accepted = Vec::new();
        let relayed = match self.worker.listener_by_token(token) {
            Some((relayed, l)) => {
                for _ in 0..16 {
                    match l.accept() {
                        Ok(a) => accepted.push(a),
                        Err(_) => break,
                    }
                }
                relayed
            }
            None => return,
        };
        for (stream, peer) in accepted {
            // Refused peers are closed at once (the core counted why).
            let Some((id, attempt)) = self.worker.peer_connection(now, relayed, peer) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            if stream.set_nonblocking(true).is_err()
                || self.watch_peer(stream, id, false, Interest::READ).is_none()
            {
                self.worker.tcp_connection_closed(id);
                continue;
            }
            self.send_control(attempt);
        }
    }

    /// The peer connection behind `token` is ready: connected, readable or writable.
    pub(super) fn peer_ready(&mut self, now: Instant, token: u64) {
        let Some(p) = self.peers.get_mut(&token) else {
            return;
        };
        if p.connecting {
            let up = matches!(p.stream.take_error(), Ok(None)) && p.stream.peer_addr().is_ok();
            p.connecting = false;
            let id = p.id;
            if !up {
                // Answered first: closing makes the core forget the connection.
                self.connect_done(now, id, false);
                self.close_peer(token);
                return;
            }
            let _ = p.stream.set_nodelay(true);
            if !self.connect_done(now, id, true) {
                self.close_peer(token);
            }
            self.peer_interest(token);
            return;
        }
        if p.paused {
            return;
        }
        let mut closed = false;
        for _ in 0..READS_PER_PASS {
            let Some(p) = self.peers.get_mut(&token) else {
                return;
            };
            let queued = match p.client.and_then(|c| self.conns.get(&c)) {
                Some(c) => c.outbuf.len(),
                None => p.held.len(),
            };
            let room = MAX_QUEUED.saturating_sub(queued).min(self.scratch.len());
            if room == 0 {
                p.paused = true;
                break;
            }
            match p.stream.read(&mut self.scratch[..room]) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => match p.client {
                    Some(c) => {
                        self.worker.count_stream(false, n);
                        if let Some(conn) = self.conns.get_mut(&c) {
                            conn.outbuf.extend_from_slice(&self.scratch[..n]);
                        }
                    }
                    None => p.held.extend_from_slice(&self.scratch[..n]),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let client = self.peers.get(&token).and_then(|p| p.client);
        if let Some(c) = client {
            self.flush(c);
        }
        if closed {
            self.close_peer(token);
        } else {
            self.peer_interest(token);
        }
    }

    /// ConnectionBind succeeded on connection `conn`: splice it to peer connection `id`, and
    /// hand it what the peer sent so far.
    pub(super) fn bind_data(&mut self, conn: u64, id: ConnectionId) {
        let Some(&token) = self.peer_of.get(&id) else {
            self.close(conn);
            return;
        };
        let (Some(p), Some(c)) = (self.peers.get_mut(&token), self.conns.get_mut(&conn)) else {
            self.close(conn);
            return;
        };
        p.client = Some(conn);
        p.paused = false;
        c.data = Some(token);
        c.outbuf.append(&mut p.held);
        self.flush(conn);
        self.peer_interest(token);
    }

    /// Moves what a client data connection sent to its peer, as far as there is room; pauses
    /// the connection if there is not.
    pub(super) fn splice_to_peer(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(p) = c.data.and_then(|t| self.peers.get_mut(&t)) else {
            return;
        };
        let room = MAX_QUEUED.saturating_sub(p.outbuf.len());
        let n = room.min(c.inbuf.len());
        if n > 0 {
            p.outbuf.extend_from_slice(&c.inbuf[..n]);
            c.inbuf.drain(..n);
            self.worker.count_stream(true, n);
        }
        c.paused = !c.inbuf.is_empty();
        if let Some(t) = c.data {
            self.flush_peer(t);
        }
    }

    /// Sends what is queued for every peer, resumes peers whose client has room again.
    pub(super) fn flush_peers(&mut self) {
        let busy: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.outbuf.is_empty() || p.paused || p.interest.write)
            .map(|(t, _)| *t)
            .collect();
        for t in busy {
            self.flush_peer(t);
            let Some(p) = self.peers.get_mut(&t) else {
                continue;
            };
            if p.paused {
                let queued = match p.client.and_then(|c| self.conns.get(&c)) {
                    Some(c) => c.outbuf.len(),
                    None => p.held.len(),
                };
                p.paused = queued >= MAX_QUEUED / 2;
            }
            self.peer_interest(t);
        }
    }

    /// Carries out what the core decided on its own: closes, and late Connect answers.
    pub(super) fn notices(&mut self) {
        for n in self.worker.take_notices() {
            match n {
                Notice::Close(id) => {
                    if let Some(&t) = self.peer_of.get(&id) {
                        self.close_peer(t);
                    }
                }
                Notice::Send { from, to, bytes } => {
                    if let Some(&c) = self.by_client.get(&(to, from))
                        && self
                            .conns
                            .get_mut(&c)
                            .is_some_and(|c| c.enqueue(&bytes, true))
                    {
                        self.close(c);
                    }
                }
            }
        }
    }

    /// Closes a peer connection and the client data connection spliced to it.
    pub(super) fn close_peer(&mut self, token: u64) {
        let Some(mut p) = self.peers.remove(&token) else {
            return;
        };
        self.peer_of.remove(&p.id);
        self.worker.tcp_connection_closed(p.id);
        // What is already queued for the peer goes out if the kernel takes it now.
        let _ = write_out(&mut p.stream, &mut p.outbuf);
        if let Some(c) = p.client {
            if let Some(conn) = self.conns.get_mut(&c) {
                // Likewise for the client, then it closes too.
                conn.data = None;
                let _ = conn.flush();
            }
            self.close(c);
        }
    }

    fn flush_peer(&mut self, token: u64) {
        let Some(p) = self.peers.get_mut(&token) else {
            return;
        };
        if p.connecting {
            return;
        }
        if write_out(&mut p.stream, &mut p.outbuf) {
            self.close_peer(token);
            return;
        }
        // Room at the peer again: a paused client data connection may go on.
        let client = p.client;
        let room = p.outbuf.len() < MAX_QUEUED / 2;
        if let Some(c) = client
            && room
            && self.conns.get(&c).is_some_and(|c| c.paused)
        {
            self.splice_to_peer(c);
        }
        self.peer_interest(token);
    }

    fn peer_interest(&mut self, token: u64) {
        let Some(p) = self.peers.get_mut(&token) else {
            return;
        };
        if p.connecting {
            return;
        }
        let want = Interest {
            read: !p.paused,
            write: !p.outbuf.is_empty(),
        };
        if want != p.interest && self.epoll.modify(p.stream.as_raw_fd(), token, want).is_ok() {
            p.interest = want;
        }
    }

    /// Registers a peer connection; `None` if it cannot be watched.
    fn watch_peer(
        &mut self,
        stream: TcpStream,
        id: ConnectionId,
        connecting: bool,
        interest: Interest,
    ) -> Option<u64> {
        let token = PEER_TOKEN_BASE + self.next_peer;
        self.next_peer += 1;
        self.epoll
            .add_with(stream.as_raw_fd(), token, interest)
            .ok()?;
        self.peers.insert(
            token,
            Peer {
                stream,
                id,
                connecting,
                outbuf: Vec::new(),
                held: Vec::new(),
                client: None,
                paused: false,
                interest,
            },
        );
        self.peer_of.insert(id, token);
        Some(token)
    }

    /// Reports a Connect's outcome to the core and sends its answer; `false` if nobody waits
    /// for it any more.
    fn connect_done(&mut self, now: Instant, id: ConnectionId, up: bool) -> bool {
        match self.worker.peer_connected(now, id, up) {
            Some(t) => {
                self.send_control(t);
                up
            }
            None => false,
        }
    }

    /// Sends the message in the worker's output buffer to a client's control connection.
    fn send_control(&mut self, t: Transmit) {
        let out = &self.worker.out[..t.len];
        if let Some(&c) = self.by_client.get(&(t.to, t.from))
            && self.conns.get_mut(&c).is_some_and(|c| c.enqueue(out, true))
        {
            self.close(c);
        }
    }
}

/// Sends what `outbuf` holds as far as the socket takes it; `true` if the connection is dead.
fn write_out(stream: &mut TcpStream, outbuf: &mut Vec<u8>) -> bool {
    while !outbuf.is_empty() {
        match stream.write(outbuf) {
            Ok(0) => return true,
            Ok(n) => {
                outbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

/// A non-blocking TCP connection from `local` (a relay listener's address, shared through
/// `SO_REUSEPORT`) to `peer`.
fn connect_from(local: SocketAddr, peer: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&local.into())?;
    s.set_nonblocking(true)?;
    match s.connect(&peer.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}
