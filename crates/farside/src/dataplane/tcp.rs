//! STUN and TURN over TCP (RFC 8489 §6.2.2, RFC 8656 §3.1, §12.5) when TURN is on: one thread
//! owns the TCP listeners, the client connections and the relay sockets of their allocations,
//! on one `epoll` set. Binding requests go to the STUN responder, everything else to this
//! thread's own [`TurnServer`](farside_turn::TurnServer); an allocation ends with its
//! connection.
//!
//! Framing: a STUN message is its 20-byte header plus the length it gives; ChannelData is its
//! 4-byte header plus the length, padded to 4 bytes. Anything else closes the connection.
//!
//! The same thread serves TLS (`[tls] listen`) with rustls: the same framing inside the TLS
//! stream, and the transport of the 5-tuple is TLS.
//!
//! TCP allocations (RFC 6062) live here too: their listeners, their connections with peers,
//! and the client data connections spliced to them (`peers`).

mod peers;

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use farside_io::{Epoll, Interest};
use farside_stun::binding::{BindingServer, Outcome, Received, Transport};
use farside_turn::channel_data::ChannelData;
use farside_turn::{FiveTuple, TurnServer, TurnTransport};

use crate::dataplane::relay_ports::RELAY_TOKEN_BASE;
use crate::dataplane::turn::{TcpAction, TurnShared, TurnWorker};
use crate::net::tls_reload::TlsFiles;

/// Connection tokens start here (peer connections from 2^40, relay sockets and TCP relay
/// listeners from 2^32, client-facing listeners below).
const CONN_TOKEN_BASE: u64 = 1 << 48;
/// Tokens of TCP connections with peers (RFC 6062) start here.
const PEER_TOKEN_BASE: u64 = 1 << 40;
/// Largest frame: a STUN header plus a 16-bit length.
const MAX_FRAME: usize = 20 + 65_535;
/// Bytes queued for a slow reader before relayed data for it is dropped (as UDP would).
const MAX_QUEUED: usize = 256 * 1024;

/// TCP limits (the `stun.tcp_*` keys).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections in all.
    pub max: usize,
    /// Connections per client IP.
    pub per_ip: usize,
    /// A connection without an allocation that stays silent this long is closed.
    pub idle: Duration,
}

struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    local: SocketAddr,
    remote: SocketAddr,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    last: Instant,
    /// A client data connection (RFC 6062 §5.4): the token of the peer connection it is
    /// spliced to; no more framing.
    data: Option<u64>,
    /// Not read while the other end of its splice is full.
    paused: bool,
    /// A data connection the client closed (or that failed): no more reading; what it sent
    /// still goes to the peer before both close.
    ended: bool,
    /// Counted against `limits.per_ip` (data connections are not: they come with the peer
    /// connections, which have their own bounds).
    per_ip_counted: bool,
    /// What `epoll` watches it for; nothing means not registered at all, so that a reset
    /// socket nobody reads cannot wake the loop again and again.
    interest: Interest,
}

/// Binds `addresses` (TCP) and `tls_addresses` (TLS with `tls`) and starts the thread.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    addresses: &[SocketAddr],
    tls_addresses: &[SocketAddr],
    tls: Option<TlsFiles>,
    shared: Arc<TurnShared>,
    binding: Arc<BindingServer>,
    limits: Limits,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut listeners = Vec::new();
    for &a in addresses {
        let l = crate::net::bind::tcp_listener(a)?;
        tracing::info!("S002 STUN and TURN listening on tcp {a}");
        listeners.push((l, false));
    }
    if tls.is_some() {
        for &a in tls_addresses {
            let l = crate::net::bind::tcp_listener(a)?;
            tracing::info!("S002 STUN and TURN listening on tls {a}");
            listeners.push((l, true));
        }
    }
    let worker = TurnWorker::new(&shared);
    let epoll = Epoll::new()?;
    std::thread::Builder::new()
        .name("turn-tcp".into())
        .spawn(move || {
            let mut t = TcpTurn {
                epoll,
                listeners,
                tls,
                worker,
                binding,
                limits,
                conns: HashMap::new(),
                by_client: HashMap::new(),
                per_ip: HashMap::new(),
                next_id: 0,
                scratch: vec![0u8; 4096],
                peers: HashMap::new(),
                peer_of: HashMap::new(),
                next_peer: 0,
            };
            if let Err(e) = t.run(&shutdown) {
                tracing::error!("S103 the TCP TURN thread stopped: {e:#}");
            }
        })
        .context("spawn the TCP TURN thread")
}

struct TcpTurn {
    epoll: Epoll,
    listeners: Vec<(TcpListener, bool)>,
    tls: Option<TlsFiles>,
    worker: TurnWorker,
    binding: Arc<BindingServer>,
    limits: Limits,
    conns: HashMap<u64, Conn>,
    by_client: HashMap<(SocketAddr, SocketAddr), u64>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
    scratch: Vec<u8>,
    /// TCP connections with peers (RFC 6062), by token.
    peers: HashMap<u64, peers::Peer>,
    peer_of: HashMap<farside_turn::ConnectionId, u64>,
    next_peer: u64,
}

impl TcpTurn {
    fn run(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        for (i, (l, _)) in self.listeners.iter().enumerate() {
            self.epoll.add(l.as_raw_fd(), i as u64)?;
        }
        let mut ready = Vec::with_capacity(256);
        let mut last_sweep = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            ready.clear();
            self.epoll
                .wait(Duration::from_millis(100), |t| ready.push(t))?;
            let now = Instant::now();
            self.worker.tick(now);
            for &token in &ready {
                if token >= CONN_TOKEN_BASE {
                    self.readable(now, token);
                } else if token >= PEER_TOKEN_BASE {
                    self.peer_ready(now, token);
                } else if token >= RELAY_TOKEN_BASE {
                    if self.worker.listener_by_token(token).is_some() {
                        self.accept_peers(now, token);
                    } else {
                        self.relay_readable(now, token);
                    }
                } else if let Some((l, tls)) = self.listeners.get(token as usize) {
                    let tls = *tls;
                    let accepted = accept(l);
                    for (stream, remote) in accepted {
                        self.adopt(stream, remote, tls, now);
                    }
                }
            }
            self.worker.flush_to_peers();
            for (fd, token) in self.worker.take_fresh() {
                if let Err(e) = self.epoll.add(fd, token) {
                    tracing::warn!("S104 cannot watch a relay socket: {e}");
                }
            }
            self.notices();
            // Queued output (a slow reader) is retried every pass, and watched for room.
            let pending: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    !c.outbuf.is_empty()
                        || c.tls.as_ref().is_some_and(|t| t.wants_write())
                        || c.paused
                        || c.interest.write
                })
                .map(|(id, _)| *id)
                .collect();
            for id in pending {
                self.flush(id);
            }
            self.flush_peers(now);
            if now.duration_since(last_sweep) >= Duration::from_secs(1) {
                last_sweep = now;
                self.sweep(now);
                if let Some(files) = self.tls.as_mut() {
                    files.refresh(now);
                }
            }
        }
        Ok(())
    }

    fn adopt(&mut self, stream: TcpStream, remote: SocketAddr, tls: bool, now: Instant) {
        let n_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if self.conns.len() >= self.limits.max || n_ip >= self.limits.per_ip {
            return; // dropped: closed at once
        }
        let Ok(local) = stream.local_addr() else {
            return;
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let tls = match (tls, &self.tls) {
            (false, _) => None,
            (true, Some(files)) => {
                match rustls::ServerConnection::new(Arc::clone(files.config())) {
                    Ok(c) => Some(Box::new(c)),
                    Err(_) => return,
                }
            }
            (true, None) => return,
        };
        let id = CONN_TOKEN_BASE + self.next_id;
        self.next_id += 1;
        if self.epoll.add(stream.as_raw_fd(), id).is_err() {
            return;
        }
        *self.per_ip.entry(remote.ip()).or_insert(0) += 1;
        self.by_client.insert((remote, local), id);
        self.conns.insert(
            id,
            Conn {
                stream,
                tls,
                local,
                remote,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                last: now,
                data: None,
                paused: false,
                ended: false,
                per_ip_counted: true,
                interest: Interest::READ,
            },
        );
    }

    fn close(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        self.by_client.remove(&(c.remote, c.local));
        if c.per_ip_counted {
            self.uncount_ip(c.remote.ip());
        }
        if let Some(peer) = c.data {
            // RFC 6062 §5.4: either end of a splice closing closes the other.
            self.close_peer(peer);
            return;
        }
        self.worker.connection_closed(FiveTuple {
            client: c.remote,
            server: c.local,
            transport: c.transport(),
        });
    }

    fn uncount_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Idle connections without an allocation are closed after `limits.idle`.
    fn sweep(&mut self, now: Instant) {
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.data.is_none() && now.duration_since(c.last) > self.limits.idle)
            .filter(|(_, c)| {
                !self.worker.has_allocation(FiveTuple {
                    client: c.remote,
                    server: c.local,
                    transport: c.transport(),
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id);
        }
    }

    fn readable(&mut self, now: Instant, id: u64) {
        let mut closed = false;
        {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.paused || c.ended {
                return; // the other end of its splice is full, or this end is done
            }
            if c.tls.is_some() {
                closed = read_tls(c, &mut self.scratch, now);
            }
            // Bounded per pass: a fast sender cannot starve the others.
            for _ in 0..16 {
                if c.tls.is_some() {
                    break;
                }
                match c.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&self.scratch[..n]);
                        c.last = now;
                        if c.inbuf.len() > 2 * MAX_FRAME {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let data = self.conns.get(&id).is_some_and(|c| c.data.is_some());
        let ok = if data { true } else { self.frames(now, id) };
        // Bytes after a ConnectionBind, or on a data connection, go to the peer.
        if ok && self.conns.get(&id).is_some_and(|c| c.data.is_some()) {
            self.splice_to_peer(id);
        }
        if ok && closed && self.conns.get(&id).is_some_and(|c| c.data.is_some()) {
            // A data connection's end: what it sent still reaches the peer first.
            self.data_ended(now, id);
            return;
        }
        if !ok || closed {
            self.close(id);
        }
    }

    /// Handles every whole frame in the connection's buffer; `false` to close it. The buffer is
    /// taken out while its frames are handled and put back (keeping its capacity) with what
    /// is left of an incomplete frame, so no frame is copied.
    fn frames(&mut self, now: Instant, id: u64) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let mut inbuf = std::mem::take(&mut c.inbuf);
        let (local, remote, transport) = (c.local, c.remote, c.transport());
        let mut at = 0;
        let ok = loop {
            let Some(len) = frame_len(&inbuf[at..]) else {
                break false;
            };
            if len == 0 || inbuf.len() - at < len {
                break true; // need more bytes
            }
            self.frame(now, id, local, remote, transport, &inbuf[at..at + len]);
            at += len;
            match self.conns.get(&id) {
                None => break false, // closed by that frame: the rest must not act for it
                Some(c) if c.data.is_some() => break true, // the rest is data for the peer
                Some(_) => {}
            }
        };
        inbuf.drain(..at);
        match self.conns.get_mut(&id) {
            Some(c) => {
                c.inbuf = inbuf;
                ok
            }
            None => false, // closed while its frames were handled
        }
    }

    fn frame(
        &mut self,
        now: Instant,
        id: u64,
        local: SocketAddr,
        remote: SocketAddr,
        transport: TurnTransport,
        frame: &[u8],
    ) {
        if TurnServer::wants(frame) {
            // ChannelData arrives padded on streams; the core takes the message as framed.
            let answer = self.worker.client(now, transport, local, remote, frame);
            let action = self.worker.take_action();
            if let Some(t) = answer {
                let out = &self.worker.out[..t.len];
                if self
                    .conns
                    .get_mut(&id)
                    .is_some_and(|c| c.enqueue(out, true))
                {
                    // A bind whose answer cannot go out binds nothing: its peer connection
                    // goes too.
                    if let Some(TcpAction::Bind(cid)) = action {
                        self.worker.tcp_connection_closed(cid);
                        if let Some(&p) = self.peer_of.get(&cid) {
                            self.close_peer(p);
                        }
                    }
                    self.close(id);
                    return;
                }
            }
            match action {
                Some(TcpAction::Connect {
                    id: cid,
                    relayed,
                    peer,
                }) => {
                    self.start_connect(now, cid, relayed, peer);
                }
                Some(TcpAction::Bind(cid)) => self.bind_data(id, cid),
                None => {}
            }
            return;
        }
        let mut out = [0u8; crate::dataplane::stun_tcp::MAX_MESSAGE];
        let outcome = self.binding.handle(
            Received {
                transport: Transport::Tcp,
                local,
                remote,
                bytes: frame,
            },
            &mut out,
        );
        if let Outcome::Respond(r) = outcome
            && self
                .conns
                .get_mut(&id)
                .is_some_and(|c| c.enqueue(&out[..r.len], true))
        {
            self.close(id);
        }
    }

    /// Peer data for TCP clients, queued straight from the core's output buffer.
    fn relay_readable(&mut self, now: Instant, token: u64) {
        let (conns, by_client) = (&mut self.conns, &self.by_client);
        let mut dead = Vec::new();
        self.worker.peer_readable(now, token, |t, body| {
            if let Some(&id) = by_client.get(&(t.to, t.from))
                && conns.get_mut(&id).is_some_and(|c| c.enqueue(body, false))
            {
                dead.push(id);
            }
        });
        for id in dead {
            self.close(id);
        }
    }

    fn flush(&mut self, id: u64) {
        if self.conns.get_mut(&id).is_some_and(Conn::flush) {
            self.close(id);
            return;
        }
        // A data connection paused for want of room at its peer resumes once there is some.
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.paused && c.data.is_some())
        {
            self.splice_to_peer(id);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            let want = Interest {
                read: !c.paused && !c.ended,
                write: !c.outbuf.is_empty() || c.tls.as_ref().is_some_and(|t| t.wants_write()),
            };
            watch(&self.epoll, c.stream.as_raw_fd(), id, &mut c.interest, want);
        }
    }
}

impl Conn {
    fn transport(&self) -> TurnTransport {
        if self.tls.is_some() {
            TurnTransport::Tls
        } else {
            TurnTransport::Tcp
        }
    }

    /// Queues `body` and tries to send; `true` if the connection must close. Relayed data
    /// beyond [`MAX_QUEUED`] is dropped (as UDP would); a response that does not fit closes
    /// the connection (`must`).
    fn enqueue(&mut self, body: &[u8], must: bool) -> bool {
        if self.outbuf.len() + body.len() > MAX_QUEUED {
            return must;
        }
        self.outbuf.extend_from_slice(body);
        self.flush()
    }

    /// Sends what is queued, as far as the socket takes it; `true` if the connection is dead.
    fn flush(&mut self) -> bool {
        let mut dead = false;
        if let Some(tls) = self.tls.as_mut() {
            // rustls takes what fits its send buffer (64 KiB) at a time; the rest waits in
            // `outbuf` until the socket has taken what rustls holds.
            let mut blocked = false;
            while !dead && !blocked {
                if !self.outbuf.is_empty() {
                    match tls.writer().write(&self.outbuf) {
                        Ok(n) => {
                            self.outbuf.drain(..n);
                        }
                        Err(_) => dead = true,
                    }
                }
                while !dead && tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(0) => dead = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => dead = true,
                    }
                }
                if self.outbuf.is_empty() {
                    break;
                }
            }
            return dead;
        }
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => return true,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Sets what `epoll` watches `fd` for; watching for nothing takes it out of the set (errors
/// and hang-ups would still be reported, and nobody would read them).
fn watch(
    epoll: &Epoll,
    fd: std::os::fd::RawFd,
    token: u64,
    current: &mut Interest,
    want: Interest,
) {
    if want == *current {
        return;
    }
    let none = Interest {
        read: false,
        write: false,
    };
    let done = if want == none {
        epoll.remove(fd)
    } else if *current == none {
        epoll.add_with(fd, token, want)
    } else {
        epoll.modify(fd, token, want)
    };
    if done.is_ok() {
        *current = want;
    }
}

/// Reads TLS records and moves their plaintext into `inbuf`; `true` if the connection is done
/// (closed, or a TLS error).
fn read_tls(c: &mut Conn, scratch: &mut [u8], now: Instant) -> bool {
    let Some(tls) = c.tls.as_mut() else {
        return true;
    };
    let read =
        crate::net::tls_io::read_tls(tls, &mut c.stream, scratch, &mut c.inbuf, 2 * MAX_FRAME);
    if read.got {
        c.last = now;
    }
    read.closed
}

/// The length of the frame at the start of `buf`: `Some(0)` if the header is incomplete,
/// `None` if it is neither STUN nor ChannelData.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let Some(&first) = buf.first() else {
        return Some(0);
    };
    match first & 0xC0 {
        0x00 => {
            let Some(h) = buf.get(..4) else {
                return Some(0);
            };
            let len = 20 + usize::from(u16::from_be_bytes([h[2], h[3]]));
            (len <= MAX_FRAME).then_some(len)
        }
        0x40 => {
            let Some(h) = buf.get(..4) else {
                return Some(0);
            };
            Some(ChannelData::stream_len([h[0], h[1], h[2], h[3]]))
        }
        _ => None,
    }
}

/// Accepts what is waiting (bounded).
fn accept(l: &TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let mut out = Vec::new();
    for _ in 0..64 {
        match l.accept() {
            Ok(a) => out.push(a),
            Err(_) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(frame_len(&[]), Some(0));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00]), Some(0));
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x08]), Some(28));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(frame_len(&[0x80, 0x00]), None);
        assert_eq!(frame_len(&[0xC0]), None);
    }
}
