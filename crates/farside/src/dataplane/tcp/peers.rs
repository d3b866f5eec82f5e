//! TCP allocations' connections with peers (RFC 6062): connecting out for Connect, accepting
//! on relay listeners, and splicing each to its client data connection (a raw connection of the
//! pool) once bound. The core decides who may connect and when to give up; this only moves
//! bytes, with backpressure: a side is not read while the other side has `max_queued` bytes
//! waiting.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use farside_io::Interest;
use farside_time::Timestamp;
use farside_turn::{ConnectionId, Notice};

use super::{PEER_TOKEN_BASE, StreamThread};
use crate::net::stream::{CloseReason, Urgency};

/// Reads from one peer per pass, at most.
const READS_PER_PASS: usize = 16;
/// After one side of a splice ends, this long at most for the other to take what is queued.
const LINGER: Duration = Duration::from_secs(10);

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
    /// The client data connection's id in the pool, once bound.
    client: Option<u64>,
    paused: bool,
    /// The peer closed (or the connection failed): no more reading.
    ended: bool,
    /// One side ended: the pair closes once the other has taken what is queued for it, or at
    /// this time.
    closing: Option<Timestamp>,
    interest: Interest,
}

impl StreamThread {
    /// The most bytes one side of a splice holds for the other.
    fn max_queued(&self) -> usize {
        self.pool.limits().max_queued
    }

    /// Connect (RFC 6062 §5.2): a non-blocking connection from the relayed address to `peer`.
    pub(super) fn start_connect(
        &mut self,
        now: Timestamp,
        id: ConnectionId,
        relayed: SocketAddr,
        peer: SocketAddr,
    ) {
        if self.at_capacity() {
            self.connect_done(now, id, false);
            return;
        }
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
    pub(super) fn accept_peers(&mut self, now: Timestamp, token: u64) {
        let Some(w) = self.worker.as_ref() else {
            return;
        };
        let mut accepted = Vec::new();
        let relayed = match w.listener_by_token(token) {
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
            if self.at_capacity() {
                continue;
            }
            let Some(w) = self.worker.as_mut() else {
                return;
            };
            let Some((id, attempt)) = w.peer_connection(now, relayed, peer) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            if stream.set_nonblocking(true).is_err()
                || self.watch_peer(stream, id, false, Interest::READ).is_none()
            {
                if let Some(w) = self.worker.as_mut() {
                    w.tcp_connection_closed(id);
                }
                continue;
            }
            self.send_control(now, attempt);
        }
    }

    /// The peer connection behind `token` is ready: connected, readable or writable.
    pub(super) fn peer_ready(&mut self, now: Timestamp, token: u64) {
        let max_queued = self.max_queued();
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
        if p.paused || p.ended {
            return;
        }
        let mut closed = false;
        for _ in 0..READS_PER_PASS {
            let Some(p) = self.peers.get_mut(&token) else {
                return;
            };
            let queued = queued_for_client(&self.pool, p);
            let room = max_queued.saturating_sub(queued).min(self.scratch.len());
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
                        if let Some(w) = self.worker.as_ref() {
                            w.count_stream(false, n);
                        }
                        if let Some(conn) = self.pool.get_mut(c) {
                            conn.output.extend_from_slice(&self.scratch[..n]);
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
            self.pool.flush(&self.epoll, now, c);
        }
        match (closed, client) {
            // The peer's end: what it sent still reaches the client first (RFC 6062 §5.5).
            (true, Some(_)) => {
                if let Some(p) = self.peers.get_mut(&token) {
                    p.ended = true;
                    p.closing = Some(now + LINGER);
                }
                self.peer_interest(token);
            }
            // Nobody bound it yet: what it sent has nowhere to go.
            (true, None) => self.close_peer(token),
            (false, _) => self.peer_interest(token),
        }
    }

    /// Client data connection `conn` ended: it is read no more, and the pair closes once the
    /// peer has taken what the client sent.
    pub(super) fn data_ended(&mut self, now: Timestamp, conn: u64) {
        let peer = self.pool.get(conn).and_then(|c| c.tag);
        if let Some(p) = peer.and_then(|t| self.peers.get_mut(&t)) {
            p.closing.get_or_insert(now + LINGER);
        }
        if peer.is_none() {
            self.pool.close(&self.epoll, conn, CloseReason::Peer);
        }
    }

    /// ConnectionBind succeeded on connection `conn`: splice it to peer connection `id`, and
    /// hand it what the peer sent so far. A bind whose answer could not go out (the
    /// connection is gone) binds nothing: its peer connection goes too.
    pub(super) fn bind_data(&mut self, now: Timestamp, conn: u64, id: ConnectionId) {
        let token = self.peer_of.get(&id).copied();
        let (Some(token), true) = (token, self.pool.get(conn).is_some()) else {
            if let Some(w) = self.worker.as_mut() {
                w.tcp_connection_closed(id);
            }
            if let Some(&t) = self.peer_of.get(&id) {
                self.close_peer(t);
            }
            self.pool.close(&self.epoll, conn, CloseReason::Shell);
            return;
        };
        let (Some(p), Some(c)) = (self.peers.get_mut(&token), self.pool.get_mut(conn)) else {
            return;
        };
        p.client = Some(conn);
        p.paused = false;
        c.tag = Some(token);
        c.output.append(&mut p.held);
        self.pool.flush(&self.epoll, now, conn);
        // Bytes that came after the ConnectionBind are the client's first for the peer.
        self.splice_to_peer(now, conn);
        self.peer_interest(token);
    }

    /// Moves what a client data connection sent to its peer, as far as there is room; pauses
    /// the connection if there is not.
    pub(super) fn splice_to_peer(&mut self, now: Timestamp, conn: u64) {
        let max_queued = self.max_queued();
        let Some(c) = self.pool.get_mut(conn) else {
            return;
        };
        let Some(p) = c.tag.and_then(|t| self.peers.get_mut(&t)) else {
            return;
        };
        let room = max_queued.saturating_sub(p.outbuf.len());
        let n = room.min(c.input.len());
        if n > 0 {
            p.outbuf.extend_from_slice(&c.input[..n]);
            c.input.drain(..n);
            if let Some(w) = self.worker.as_ref() {
                w.count_stream(true, n);
            }
        }
        let paused = !c.input.is_empty();
        let tag = c.tag;
        if paused {
            c.paused = true;
            c.watch(&self.epoll);
        } else if c.paused {
            self.pool.resume(&self.epoll, conn);
        }
        if let Some(t) = tag {
            self.flush_peer(now, t);
        }
    }

    /// Sends what is queued for every peer, resumes peers whose client has room again, and
    /// closes the pairs that were ending once drained.
    pub(super) fn flush_peers(&mut self, now: Timestamp) {
        let max_queued = self.max_queued();
        let busy: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.outbuf.is_empty() || p.paused || p.interest.write || p.closing.is_some()
            })
            .map(|(t, _)| *t)
            .collect();
        for t in busy {
            if self.drained_or_late(t, now) {
                self.close_peer(t);
                continue;
            }
            self.flush_peer(now, t);
            let Some(p) = self.peers.get_mut(&t) else {
                continue;
            };
            if p.paused {
                p.paused = queued_for_client(&self.pool, p) >= max_queued / 2;
            }
            self.peer_interest(t);
        }
    }

    /// Carries out what the core decided on its own: closes, and late Connect answers.
    pub(super) fn notices(&mut self, now: Timestamp) {
        let Some(w) = self.worker.as_mut() else {
            return;
        };
        for n in w.take_notices() {
            match n {
                Notice::Close(id) => {
                    if let Some(&t) = self.peer_of.get(&id) {
                        self.close_peer(t);
                    }
                }
                Notice::Send { from, to, bytes } => {
                    self.pool
                        .send(&self.epoll, now, from, to, &bytes, Urgency::Required);
                }
            }
        }
    }

    /// Whether an ending pair has nothing left to pass on, or has waited long enough.
    fn drained_or_late(&self, token: u64, now: Timestamp) -> bool {
        let Some(p) = self.peers.get(&token) else {
            return false;
        };
        let Some(deadline) = p.closing else {
            return false;
        };
        let client = p.client.and_then(|c| self.pool.get(c));
        let drained = match client {
            None => true,
            // The peer ended: the client must have taken everything.
            Some(c) if p.ended => !c.pending(),
            // The client ended: the peer must have.
            Some(c) => c.input.is_empty() && p.outbuf.is_empty(),
        };
        drained || now >= deadline
    }

    /// Closes a peer connection and the client data connection spliced to it: each is shut
    /// for writing and read empty first, so that the close is a FIN that lets the other end
    /// read all it was sent, not a reset that throws it away.
    pub(super) fn close_peer(&mut self, token: u64) {
        let Some(mut p) = self.peers.remove(&token) else {
            return;
        };
        self.peer_of.remove(&p.id);
        if let Some(w) = self.worker.as_mut() {
            w.tcp_connection_closed(p.id);
        }
        // What is already queued for the peer goes out if the kernel takes it now.
        let _ = write_out(&mut p.stream, &mut p.outbuf);
        linger(&mut p.stream, &mut self.scratch);
        if let Some(c) = p.client {
            if let Some(conn) = self.pool.get_mut(c) {
                conn.tag = None;
            }
            // The pool lingers on it likewise.
            self.pool.close(&self.epoll, c, CloseReason::Shell);
        }
    }

    /// Whether the thread holds as many TCP connections (clients and peers) as it may.
    fn at_capacity(&self) -> bool {
        self.pool.len() + self.peers.len() >= self.pool.limits().max_connections
    }

    fn flush_peer(&mut self, now: Timestamp, token: u64) {
        let max_queued = self.max_queued();
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
        let room = p.outbuf.len() < max_queued / 2;
        if let Some(c) = client
            && room
            && self
                .pool
                .get(c)
                .is_some_and(|c| c.paused && !c.input.is_empty())
        {
            self.splice_to_peer(now, c);
        } else if let Some(c) = client
            && room
            && self.pool.get(c).is_some_and(|c| c.paused)
        {
            self.pool.resume(&self.epoll, c);
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
            read: !p.paused && !p.ended,
            write: !p.outbuf.is_empty(),
        };
        if want == p.interest {
            return;
        }
        let fd = p.stream.as_raw_fd();
        let none = Interest {
            read: false,
            write: false,
        };
        // Watching for nothing takes it out of the set: a reset socket nobody reads must not
        // wake the loop again and again.
        let done = if want == none {
            self.epoll.remove(fd)
        } else if p.interest == none {
            self.epoll.add_with(fd, token, want)
        } else {
            self.epoll.modify(fd, token, want)
        };
        if done.is_ok() {
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
                ended: false,
                closing: None,
                interest,
            },
        );
        self.peer_of.insert(id, token);
        Some(token)
    }

    /// Reports a Connect's outcome to the core and sends its answer; `false` if nobody waits
    /// for it any more.
    fn connect_done(&mut self, now: Timestamp, id: ConnectionId, up: bool) -> bool {
        let Some(w) = self.worker.as_mut() else {
            return false;
        };
        match w.peer_connected(now, id, up) {
            Some(t) => {
                self.send_control(now, t);
                up
            }
            None => false,
        }
    }
}

/// Bytes from `p` waiting for its client: in the client's queue once bound, held before.
fn queued_for_client(pool: &crate::net::stream::Pool, p: &Peer) -> usize {
    match p.client.and_then(|c| pool.get(c)) {
        Some(c) => c.output.len(),
        None => p.held.len(),
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

/// Shuts `stream` for writing (a FIN after what it was sent) and reads what is waiting on it,
/// so that dropping it does not answer unread bytes with a reset.
fn linger(stream: &mut TcpStream, scratch: &mut [u8]) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    for _ in 0..READS_PER_PASS {
        match stream.read(scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
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
