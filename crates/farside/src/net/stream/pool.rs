//! A thread's stream connections: its listeners, admission, reading and framing, writing, and
//! the timeouts (see the module above for the rules).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use farside_io::{Epoll, Interest};
use farside_sip::websocket::{self, Handshake};
use farside_stun::framing::Frame;
use farside_time::Timestamp;

use super::conn::{CloseReason, Conn, Meta, Mode, Read};
use super::{Kind, Limits};
use crate::net::tls_reload::TlsFiles;
use crate::telemetry::stream::StreamCounters;

/// Tokens of a pool's connections are its base plus this and up (its listeners' are below).
const CONNECTIONS: u64 = 1 << 32;
/// The span of tokens one pool uses from its base.
const TOKENS: u64 = 1 << 40;
/// Messages of one connection handled per turn: the rest of what it pipelined waits in its
/// input for the next pass (see [`Pool::take_resumed`]), so that its answers are written, and
/// its backlog checked, before it is read further, and other connections get their turn.
const MESSAGES_PER_TURN: usize = 32;

/// How a connection's turn at its input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Nothing whole is left.
    Done,
    /// Stopped with bytes left that may hold whole messages.
    Stopped,
}

/// A connection that closed, for the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Who it was.
    pub meta: Meta,
    /// The shell's mark on it.
    pub tag: Option<u64>,
    /// It was in [`Mode::Raw`].
    pub raw: bool,
}

/// What the shell wants after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Go on with the next.
    Continue,
    /// From here on the connection carries bytes for someone else (RFC 6062's ConnectionBind):
    /// the rest of its input stays in `input`, in [`Mode::Raw`].
    Raw,
    /// Close it (once what is queued is written).
    Close,
}

/// How much a queued message matters when the peer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A response or a request: without it the conversation breaks, so the connection closes.
    Required,
    /// Relayed data: dropped, as UDP would.
    Droppable,
}

struct Listener {
    address: SocketAddr,
    socket: TcpListener,
    kind: Kind,
}

/// The stream connections of one service on one thread.
pub struct Pool {
    listeners: Vec<Listener>,
    /// The connections (public for the RFC 6062 splice, which moves their bytes itself).
    pub conns: HashMap<u64, Conn>,
    by_flow: HashMap<(SocketAddr, SocketAddr), u64>,
    by_remote: HashMap<SocketAddr, u64>,
    per_ip: HashMap<IpAddr, usize>,
    limits: Limits,
    /// Which pages may open WebSocket connections (same host only, unless set).
    ws_origins: websocket::Origins,
    tls: Option<TlsFiles>,
    /// The client side for dialling TLS (see [`Pool::connect`]); none: TLS is not dialled.
    dial_tls: Option<Arc<rustls::ClientConfig>>,
    counters: Arc<StreamCounters>,
    base: u64,
    next_id: u64,
    scratch: Vec<u8>,
    /// Connections closed since [`Pool::take_closed`].
    closed: Vec<Closed>,
    /// Raw connections that read bytes since [`Pool::take_raw`].
    raw: Vec<u64>,
    /// Connections with messages left in their input since [`Pool::take_resumed`].
    resumed: Vec<u64>,
}

impl Pool {
    /// Binds `listeners` (IPv6 ones IPv6-only, as the STUN listeners); secure ones need `tls`.
    /// Epoll tokens from `base` to `base + TOKENS` are this pool's.
    pub fn bind(
        listeners: &[(SocketAddr, Kind)],
        tls: Option<TlsFiles>,
        limits: Limits,
        counters: Arc<StreamCounters>,
        base: u64,
    ) -> anyhow::Result<Pool> {
        let mut bound = Vec::new();
        for &(address, kind) in listeners {
            if kind.is_secure() && tls.is_none() {
                anyhow::bail!(
                    "{} listener {address} needs [tls] cert and key",
                    kind.name()
                );
            }
            bound.push(Listener {
                address,
                socket: crate::net::bind::tcp_listener(address)?,
                kind,
            });
        }
        Ok(Pool {
            listeners: bound,
            conns: HashMap::new(),
            by_flow: HashMap::new(),
            by_remote: HashMap::new(),
            per_ip: HashMap::new(),
            limits,
            ws_origins: websocket::Origins::default(),
            tls,
            dial_tls: None,
            counters,
            base,
            next_id: 0,
            scratch: vec![0u8; 16 * 1024],
            closed: Vec::new(),
            raw: Vec::new(),
            resumed: Vec::new(),
        })
    }

    /// The listeners.
    pub fn addresses(&self) -> impl Iterator<Item = (SocketAddr, Kind)> + '_ {
        self.listeners.iter().map(|l| (l.address, l.kind))
    }

    /// Puts the listeners on `epoll`.
    pub fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        for (i, l) in self.listeners.iter().enumerate() {
            epoll.add(l.socket.as_raw_fd(), self.base + i as u64)?;
        }
        Ok(())
    }

    /// Whether `token` is one of this pool's.
    pub fn owns(&self, token: u64) -> bool {
        (self.base..self.base + TOKENS).contains(&token)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// The connection between `local` and `remote`; failing that, any from `remote`.
    pub fn find(&self, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
        self.by_flow
            .get(&(local, remote))
            .or_else(|| self.by_remote.get(&remote))
            .copied()
    }

    /// Connections closed since the last call (the shell ends what rode on them).
    pub fn take_closed(&mut self) -> Vec<Closed> {
        std::mem::take(&mut self.closed)
    }

    /// Raw connections with new bytes in `input` since the last call.
    pub fn take_raw(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.raw)
    }

    /// Connections that stopped with messages left in their input (their turn was up, or
    /// their peer stopped reading and has caught up since): the owner hands each to
    /// [`Pool::ready`] as if it were readable, on its next pass without waiting.
    pub fn take_resumed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.resumed)
    }

    /// Whether a connection waits for [`Pool::take_resumed`]: the owner must not sleep.
    pub fn has_resumed(&self) -> bool {
        !self.resumed.is_empty()
    }

    /// Handles readiness of `token`: accepts on a listener, or reads a connection and hands
    /// each whole message to `on_message` (which may queue answers on the same connection with
    /// [`Outbox`]). Raw connections only read (see [`Pool::take_raw`]).
    pub fn ready(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        token: u64,
        on_message: &mut dyn FnMut(&Meta, &[u8], &mut Outbox<'_>) -> After,
    ) {
        let Some(i) = token.checked_sub(self.base) else {
            return;
        };
        if i < CONNECTIONS {
            self.accept(epoll, now, i as usize);
            return;
        }
        self.serve(epoll, now, token, on_message);
    }

    fn accept(&mut self, epoll: &Epoll, now: Timestamp, i: usize) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let (local, kind) = (l.address, l.kind);
        let mut accepted = Vec::new();
        for _ in 0..64 {
            match l.socket.accept() {
                Ok(c) => accepted.push(c),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // EMFILE and friends: the backlog waits for the next pass.
                    crate::runtime::log_once::accept_failed(&e);
                    break;
                }
            }
        }
        for (stream, remote) in accepted {
            let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
            self.adopt(epoll, now, stream, local, remote, kind);
        }
    }

    fn adopt(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        stream: TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
        kind: Kind,
    ) {
        let c = &self.counters;
        let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if self.conns.len() >= self.limits.max_connections {
            c.refused.fetch_add(1, Relaxed);
            return; // dropped: closed at once
        }
        if from_ip >= self.limits.max_per_ip {
            c.refused.fetch_add(1, Relaxed);
            c.per_ip_limit.fetch_add(1, Relaxed);
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let tls = match (kind.is_secure(), &self.tls) {
            (false, _) => None,
            (true, Some(files)) => {
                match rustls::ServerConnection::new(Arc::clone(files.config())) {
                    Ok(t) => Some(Box::new(rustls::Connection::Server(t))),
                    Err(_) => return,
                }
            }
            (true, None) => return,
        };
        if self
            .insert(epoll, now, stream, local, remote, kind, tls)
            .is_some()
        {
            self.counters.accepted.fetch_add(1, Relaxed);
            *self.per_ip.entry(remote.ip()).or_insert(0) += 1;
        }
    }

    /// Opens a connection to `remote` on behalf of the listener at `local` (from its IP, an
    /// ephemeral port), for a request whose peer's own connection is gone (RFC 3261
    /// §18.1.1): it is the flow between `local` and `remote` from then on, as if accepted
    /// there, and is marked `tag` for the shell. TCP, or TLS with the client side set by
    /// [`Pool::set_dial_tls`] (the peer's certificate checked for `remote`'s address); `None`
    /// when it cannot even start (no room, no socket, an immediate refusal, TLS not set up). A
    /// connect, handshake or certificate check that fails later closes the connection, which
    /// [`Pool::take_closed`] reports with its tag.
    pub fn connect(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        kind: Kind,
        tag: u64,
    ) -> Option<u64> {
        use socket2::{Domain, Protocol, Socket, Type};
        if kind.is_websocket() || self.conns.len() >= self.limits.max_connections {
            return None;
        }
        let tls = match kind.is_secure() {
            false => None,
            true => {
                let name = rustls::pki_types::ServerName::IpAddress(remote.ip().into());
                let client =
                    rustls::ClientConnection::new(Arc::clone(self.dial_tls.as_ref()?), name);
                Some(Box::new(rustls::Connection::Client(client.ok()?)))
            }
        };
        let socket = Socket::new(
            Domain::for_address(remote),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .ok()?;
        socket.set_nonblocking(true).ok()?;
        if !local.ip().is_unspecified() {
            socket.bind(&SocketAddr::new(local.ip(), 0).into()).ok()?;
        }
        match socket.connect(&remote.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return None,
        }
        let stream: TcpStream = socket.into();
        let id = self.insert(epoll, now, stream, local, remote, kind, tls)?;
        self.counters.dialled.fetch_add(1, Relaxed);
        if let Some(c) = self.conns.get_mut(&id) {
            c.tag = Some(tag);
            c.per_ip_counted = false;
            c.dialled = true;
            // The ClientHello waits to be written once the connect completes.
            c.watch(epoll);
        }
        Some(id)
    }

    /// Takes a connection into the pool: its epoll token, its flow, its state.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        stream: TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
        kind: Kind,
        tls: Option<Box<rustls::Connection>>,
    ) -> Option<u64> {
        let _ = stream.set_nodelay(true);
        let id = self.base + CONNECTIONS + self.next_id;
        self.next_id += 1;
        epoll.add(stream.as_raw_fd(), id).ok()?;
        self.counters.open.fetch_add(1, Relaxed);
        self.by_flow.insert((local, remote), id);
        // A newer connection from the same address (a NAT reusing a port) is the flow now.
        self.by_remote.insert(remote, id);
        self.conns.insert(
            id,
            Conn {
                meta: Meta {
                    id,
                    local,
                    remote,
                    kind,
                },
                stream,
                tls,
                dialled: false,
                ws: None,
                input: Vec::new(),
                output: Vec::new(),
                mode: Mode::Framed,
                accepted: now,
                active: now,
                drained: now,
                greeted: false,
                per_ip_counted: true,
                closing: false,
                paused: false,
                ended: false,
                backlogged: false,
                tag: None,
                interest: Interest::READ,
            },
        );
        Some(id)
    }

    fn serve(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        id: u64,
        on_message: &mut dyn FnMut(&Meta, &[u8], &mut Outbox<'_>) -> After,
    ) {
        let limit = 2 * self.limits.max_message;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.paused || c.backlogged || (c.ended && c.mode == Mode::Raw) {
            c.watch(epoll);
            return;
        }
        // A framed peer that ended with messages still waiting is not read again.
        let read = match c.ended {
            true => Read {
                closed: true,
                got: false,
                invalid: false,
                tls_error: None,
            },
            false => c.read(&mut self.scratch, limit),
        };
        if read.got {
            c.active = now;
        }
        if c.mode == Mode::Raw {
            if read.got {
                self.raw.push(id);
            }
            if read.closed {
                // What it sent still goes on; the shell ends the splice.
                c.ended = true;
                self.raw.push(id);
            }
            c.watch(epoll);
            return;
        }
        if read.invalid && c.dialled {
            // The phone Farside dialled failed the TLS handshake: most often its certificate
            // was not accepted (`sip.tls_verify`).
            let why = read
                .tls_error
                .map_or_else(|| "not TLS".to_string(), |e| e.to_string());
            self.counters.certificate_refused.fetch_add(1, Relaxed);
            crate::runtime::log_once::dial_refused(c.meta.remote, &why);
            self.close(epoll, id, CloseReason::Invalid);
            return;
        }
        if read.invalid {
            // Not TLS: nothing it sent is read; it is closed and counted as invalid.
            tracing::debug!(
                "S414 {} {} connection from {} closed: what it sent is not TLS",
                self.counters.service,
                c.meta.kind.name(),
                c.meta.remote
            );
            self.close(epoll, id, CloseReason::Invalid);
            return;
        }
        let outcome = if c.meta.kind.is_websocket() {
            self.websocket(id, now, on_message)
        } else {
            self.framed(id, now, on_message)
        };
        let reason = match outcome {
            Err(reason) => Some(reason),
            // A peer that ended its side (a shutdown after its last request) is answered
            // first: what it sent before is handled and what is queued for it written.
            Ok(turn) if read.closed => match self.conns.get_mut(&id) {
                Some(c) if turn == Turn::Stopped || c.pending() => {
                    c.ended = true;
                    None
                }
                _ => Some(CloseReason::Peer),
            },
            Ok(_) => None,
        };
        self.settle(epoll, now, id, reason);
    }

    /// Cuts and hands on the messages of a non-WebSocket connection's input. The buffer is taken
    /// out while its messages are handled and put back with what is left, so nothing is copied.
    fn framed(
        &mut self,
        id: u64,
        now: Timestamp,
        on_message: &mut dyn FnMut(&Meta, &[u8], &mut Outbox<'_>) -> After,
    ) -> Result<Turn, CloseReason> {
        let max = self.limits.max_message;
        let backlog = self.limits.max_queued / 2;
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(Turn::Done);
        };
        let input = std::mem::take(&mut c.input);
        let mut at = 0;
        let mut handled = 0;
        let result = loop {
            // Past the backlog, the rest waits until the peer reads (`settle` resumes it).
            if c.output.len() >= backlog && at < input.len() {
                break Ok(Turn::Stopped);
            }
            if handled == MESSAGES_PER_TURN && at < input.len() {
                self.resumed.push(id);
                break Ok(Turn::Stopped);
            }
            let rest = &input[at..];
            let len = match frame(c.meta.kind, rest) {
                Frame::Incomplete => break Ok(Turn::Done),
                Frame::Invalid => break Err(CloseReason::Invalid),
                Frame::Message(n) if n > max => break Err(CloseReason::Invalid),
                Frame::Message(n) if n > rest.len() => break Ok(Turn::Done),
                Frame::Message(n) => n,
            };
            c.greeted = true;
            let meta = c.meta;
            let mut out = Outbox { conn: c, now };
            let after = on_message(&meta, &rest[..len], &mut out);
            at += len;
            handled += 1;
            match after {
                After::Continue if !c.closing => {}
                After::Continue => break Ok(Turn::Done),
                After::Raw => {
                    c.mode = Mode::Raw;
                    if c.per_ip_counted {
                        // Data connections come with their peers, which have their own bound.
                        c.per_ip_counted = false;
                        if let Some(n) = self.per_ip.get_mut(&c.meta.remote.ip()) {
                            *n -= 1;
                        }
                    }
                    break Ok(Turn::Done);
                }
                After::Close => break Err(CloseReason::Shell),
            }
        };
        let mut input = input;
        input.drain(..at);
        if c.mode == Mode::Raw && !input.is_empty() {
            self.raw.push(id);
        }
        c.input = input;
        result
    }

    /// Takes a WebSocket connection through its handshake and hands on its messages.
    fn websocket(
        &mut self,
        id: u64,
        now: Timestamp,
        on_message: &mut dyn FnMut(&Meta, &[u8], &mut Outbox<'_>) -> After,
    ) -> Result<Turn, CloseReason> {
        let max = self.limits.max_message;
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(Turn::Done);
        };
        let mut used = 0;
        if c.ws.is_none() && !c.closing {
            match websocket::handshake(&c.input, &self.ws_origins) {
                Handshake::Incomplete if c.input.len() > max => return Err(CloseReason::Invalid),
                Handshake::Incomplete => return Ok(Turn::Done),
                Handshake::Accept { response, used: n } => {
                    c.output.extend_from_slice(&response);
                    used = n;
                    c.ws = Some(websocket::Reader::default());
                }
                Handshake::Refuse { response, reason } => {
                    tracing::debug!(
                        "S414 SIP {} connection from {} closed: {reason}",
                        c.meta.kind.name(),
                        c.meta.remote
                    );
                    c.output.extend_from_slice(&response);
                    c.closing = true;
                    c.input.clear();
                    return Ok(Turn::Done);
                }
            }
        }
        let backlog = self.limits.max_queued / 2;
        let input = std::mem::take(&mut c.input);
        let mut result = Ok(Turn::Done);
        let mut handled = 0;
        while let Some(reader) = c.ws.as_mut() {
            if c.closing {
                break;
            }
            if used < input.len() && c.output.len() >= backlog {
                result = Ok(Turn::Stopped);
                break;
            }
            if used < input.len() && handled == MESSAGES_PER_TURN {
                self.resumed.push(id);
                result = Ok(Turn::Stopped);
                break;
            }
            match reader.step(&input[used..]) {
                Ok((0, _)) => break,
                Ok((n, event)) => {
                    used += n;
                    match event {
                        Some(websocket::Event::Message(m)) => {
                            handled += 1;
                            c.greeted = true;
                            let meta = c.meta;
                            let mut out = Outbox { conn: c, now };
                            if on_message(&meta, &m, &mut out) != After::Continue {
                                result = Err(CloseReason::Shell);
                                break;
                            }
                        }
                        Some(websocket::Event::Reply(b)) => c.output.extend(b),
                        Some(websocket::Event::Close(b)) => {
                            c.output.extend(b);
                            c.closing = true;
                        }
                        None => {}
                    }
                }
                Err(websocket::Broken) => {
                    result = Err(CloseReason::Invalid);
                    break;
                }
            }
        }
        let mut input = input;
        input.drain(..used.min(input.len()));
        c.input = input;
        result
    }

    /// After a read or a send: writes what is queued, enforces the output bound, and closes
    /// the connection if it must go.
    fn settle(&mut self, epoll: &Epoll, now: Timestamp, id: u64, mut reason: Option<CloseReason>) {
        let max_queued = self.limits.max_queued;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.flush(now) {
            reason = reason.or(Some(CloseReason::Peer));
        }
        if c.output.len() > max_queued {
            reason = reason.or(Some(CloseReason::Overflow));
        }
        // A peer that does not read is not read either, past half its queue: its requests
        // wait in its own socket (and its input), and its stuck output closes it after the idle
        // timeout; once it catches up, what waits in its input is handled. (A spliced
        // connection's two directions stay apart: the splice has its own backpressure.)
        let was_backlogged = c.backlogged;
        c.backlogged = c.mode == Mode::Framed && c.output.len() >= max_queued / 2;
        if was_backlogged && !c.backlogged && !c.input.is_empty() && reason.is_none() {
            self.resumed.push(id);
        }
        let answered = !c.pending() && !c.backlogged && !self.resumed.contains(&id);
        if c.ended && c.mode == Mode::Framed && answered {
            reason = reason.or(Some(CloseReason::Peer));
        }
        if c.closing && !c.pending() {
            reason = reason.or(Some(CloseReason::Shell));
        }
        match reason {
            Some(r) => self.close(epoll, id, r),
            None => c.watch(epoll),
        }
    }

    /// Queues `bytes` for the connection between `local` and `remote` (see [`Pool::find`]) and
    /// writes what it can; `false` if there is none (the flow is gone) or it had to close.
    pub fn send(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        urgency: Urgency,
    ) -> bool {
        match self.find(local, remote) {
            Some(id) => self.send_to(epoll, now, id, bytes, urgency),
            None => false,
        }
    }

    /// Queues `bytes` on connection `id` and writes what it can; `false` if it is gone, had
    /// to close, or dropped droppable bytes for want of room.
    pub fn send_to(
        &mut self,
        epoll: &Epoll,
        now: Timestamp,
        id: u64,
        bytes: &[u8],
        urgency: Urgency,
    ) -> bool {
        let max_queued = self.limits.max_queued;
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        // Nothing may go before a WebSocket handshake, nor after a close began.
        if (c.meta.kind.is_websocket() && c.ws.is_none()) || c.closing {
            return false;
        }
        if c.output.len() + bytes.len() > max_queued && urgency == Urgency::Droppable {
            self.counters
                .dropped_bytes
                .fetch_add(bytes.len() as u64, Relaxed);
            return false;
        }
        if !c.pending() {
            c.drained = now;
        }
        c.queue(bytes);
        self.settle(epoll, now, id, None);
        self.conns.contains_key(&id)
    }

    /// Writes every connection's queued output (a slow peer's, retried every pass).
    pub fn flush_all(&mut self, epoll: &Epoll, now: Timestamp) {
        let pending: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pending() || c.interest.write)
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            self.settle(epoll, now, id, None);
        }
    }

    /// Closes what outstayed its welcome (about once a second): no whole message in time, a
    /// TLS handshake too slow, idle and not `held`, or output stuck.
    pub fn sweep(&mut self, epoll: &Epoll, now: Timestamp, held: &dyn Fn(&Meta) -> bool) {
        let l = self.limits;
        let due: Vec<(u64, CloseReason)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.mode == Mode::Framed)
            .filter_map(|(id, c)| {
                let age = now.duration_since(c.accepted);
                let handshaking = c.tls.as_ref().is_some_and(|t| t.is_handshaking());
                let reason = if handshaking && age >= l.tls_handshake.min(l.first_message) {
                    CloseReason::TlsHandshake
                } else if !c.greeted && age >= l.first_message {
                    CloseReason::FirstMessage
                } else if (c.pending() && now.duration_since(c.drained) >= l.idle)
                    || (now.duration_since(c.active) >= l.idle && !held(&c.meta))
                {
                    // Output stuck at a peer that does not read, or silence.
                    CloseReason::Idle
                } else {
                    return None;
                };
                Some((*id, reason))
            })
            .collect();
        for (id, reason) in due {
            self.close(epoll, id, reason);
        }
        if let Some(t) = self.tls.as_mut() {
            t.refresh(now);
        }
    }

    /// Closes connection `id`, counted under `reason`.
    pub fn close(&mut self, epoll: &Epoll, id: u64, reason: CloseReason) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        let _ = epoll.remove(c.stream.as_raw_fd());
        let meta = c.meta;
        if self.by_flow.get(&(meta.local, meta.remote)) == Some(&id) {
            self.by_flow.remove(&(meta.local, meta.remote));
        }
        if self.by_remote.get(&meta.remote) == Some(&id) {
            self.by_remote.remove(&meta.remote);
        }
        if c.per_ip_counted
            && let Some(n) = self.per_ip.get_mut(&meta.remote.ip())
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&meta.remote.ip());
            }
        }
        c.linger(&mut self.scratch);
        let counters = &self.counters;
        counters.open.fetch_sub(1, Relaxed);
        let counter = match reason {
            CloseReason::Peer | CloseReason::Shell => None,
            CloseReason::Idle => Some(&counters.idle_closed),
            CloseReason::FirstMessage => Some(&counters.first_message_closed),
            CloseReason::TlsHandshake => Some(&counters.tls_handshake_closed),
            CloseReason::Overflow => Some(&counters.overflow_closed),
            CloseReason::Invalid => Some(&counters.invalid_closed),
        };
        if let Some(n) = counter {
            n.fetch_add(1, Relaxed);
        }
        if reason == CloseReason::Invalid {
            tracing::debug!(
                "S414 {} {} connection from {} closed: what it sent is not the protocol's framing",
                counters.service,
                meta.kind.name(),
                meta.remote
            );
        }
        self.closed.push(Closed {
            meta,
            tag: c.tag,
            raw: c.mode == Mode::Raw,
        });
    }

    /// A connection, for the RFC 6062 splice.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    /// A connection, for the RFC 6062 splice.
    pub fn get(&self, id: u64) -> Option<&Conn> {
        self.conns.get(&id)
    }

    /// Reads a paused raw connection again (its splice partner has room); its bytes appear in
    /// [`Pool::take_raw`] as they come.
    pub fn resume(&mut self, epoll: &Epoll, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.paused = false;
            c.watch(epoll);
        }
    }

    /// Writes what connection `id` has queued and closes it if it must go (its peer failed,
    /// its queue overflowed): for the splice, which queues raw bytes on `output` itself.
    pub fn flush(&mut self, epoll: &Epoll, now: Timestamp, id: u64) {
        self.settle(epoll, now, id, None);
    }

    /// The client side for dialling TLS (`sip.tls_verify`, `sip.tls_ca`).
    pub fn set_dial_tls(&mut self, config: Arc<rustls::ClientConfig>) {
        self.dial_tls = Some(config);
    }

    /// Which pages may open WebSocket connections (`sip.ws_origins`).
    pub fn set_ws_origins(&mut self, origins: websocket::Origins) {
        self.ws_origins = origins;
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// The frame at the start of `buf` for a listener of `kind` (WebSocket framing is apart).
fn frame(kind: Kind, buf: &[u8]) -> Frame {
    match kind {
        Kind::StunTcp | Kind::StunTls => farside_turn::channel_data::stream_frame(buf),
        Kind::SipTcp | Kind::SipTls | Kind::SipWs | Kind::SipWss => match farside_sip::frame(buf) {
            farside_sip::Frame::Incomplete => Frame::Incomplete,
            farside_sip::Frame::Invalid => Frame::Invalid,
            // Pings and pongs go to the shell like messages: the SIP server answers pings.
            farside_sip::Frame::Ping(n)
            | farside_sip::Frame::Pong(n)
            | farside_sip::Frame::Message(n) => Frame::Message(n),
        },
    }
}

/// Where the shell queues answers to a message, on the connection it came from.
pub struct Outbox<'a> {
    conn: &'a mut Conn,
    now: Timestamp,
}

impl Outbox<'_> {
    /// Queues `bytes` (a WebSocket frame on a WebSocket connection); written after the shell
    /// returns.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.conn.pending() {
            self.conn.drained = self.now;
        }
        self.conn.queue(bytes);
    }
}
