//! TCP allocations' connections with peers (RFC 6062): connecting out for Connect, accepting
//! on relay listeners, and splicing each to its client data connection once bound. The core
//! decides who may connect and when to give up; this only moves bytes, with backpressure: a
//! side is not read while the other side has [`MAX_QUEUED`] bytes waiting.

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use farside_io::Interest;
use farside_turn::{ConnectionId, Notice, Transmit};

use super::{Conn, MAX_QUEUED, PEER_TOKEN_BASE, TcpTurn, watch};

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
    /// The client data connection's token, once bound.
    client: Option<u64>,
    paused: bool,
    /// The peer closed (or the connection failed): no more reading.
    ended: bool,
    /// One side ended: the pair closes once the other has taken what is queued for it, or at
    /// this time.
    closing: Option<Instant>,
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
            if self.at_capacity() {
                continue;
            }
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
        if p.paused || p.ended {
            return;
        }
        let mut closed = false;
        for _ in 0..READS_PER_PASS {
            let Some(p) = self.peers.get_mut(&token) else {
                return;
            };
            let queued = queued_for_client(&self.conns, p);
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
    pub(super) fn data_ended(&mut self, now: Instant, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.ended = true;
        let peer = c.data;
        self.splice_to_peer(conn);
        if let Some(p) = peer.and_then(|t| self.peers.get_mut(&t)) {
            p.closing = Some(now + LINGER);
        }
        self.flush(conn);
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
        if c.per_ip_counted {
            c.per_ip_counted = false;
            let ip = c.remote.ip();
            self.uncount_ip(ip);
        }
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

    /// Sends what is queued for every peer, resumes peers whose client has room again, and
    /// closes the pairs that were ending once drained.
    pub(super) fn flush_peers(&mut self, now: Instant) {
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
            self.flush_peer(t);
            let Some(p) = self.peers.get_mut(&t) else {
                continue;
            };
            if p.paused {
                p.paused = queued_for_client(&self.conns, p) >= MAX_QUEUED / 2;
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

    /// Whether an ending pair has nothing left to pass on, or has waited long enough.
    fn drained_or_late(&self, token: u64, now: Instant) -> bool {
        let Some(p) = self.peers.get(&token) else {
            return false;
        };
        let Some(deadline) = p.closing else {
            return false;
        };
        let client = p.client.and_then(|c| self.conns.get(&c));
        let drained = match client {
            None => true,
            // The peer ended: the client must have taken everything.
            Some(c) if p.ended => {
                c.outbuf.is_empty() && !c.tls.as_ref().is_some_and(|t| t.wants_write())
            }
            // The client ended: the peer must have.
            Some(c) => c.inbuf.is_empty() && p.outbuf.is_empty(),
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
        self.worker.tcp_connection_closed(p.id);
        // What is already queued for the peer goes out if the kernel takes it now.
        let _ = write_out(&mut p.stream, &mut p.outbuf);
        linger(&mut p.stream, &mut self.scratch);
        if let Some(c) = p.client {
            if let Some(conn) = self.conns.get_mut(&c) {
                // Likewise for the client, then it closes too.
                conn.data = None;
                if let Some(tls) = conn.tls.as_mut() {
                    tls.send_close_notify();
                }
                let _ = conn.flush();
                linger(&mut conn.stream, &mut self.scratch);
            }
            self.close(c);
        }
    }

    /// Whether the thread holds as many TCP connections (clients and peers) as it may.
    fn at_capacity(&self) -> bool {
        self.conns.len() + self.peers.len() >= self.limits.max
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
            read: !p.paused && !p.ended,
            write: !p.outbuf.is_empty(),
        };
        watch(
            &self.epoll,
            p.stream.as_raw_fd(),
            token,
            &mut p.interest,
            want,
        );
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

/// Bytes from `p` waiting for its client: in the client's queue once bound, held before.
fn queued_for_client(conns: &HashMap<u64, Conn>, p: &Peer) -> usize {
    match p.client.and_then(|c| conns.get(&c)) {
        Some(c) => c.outbuf.len(),
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
