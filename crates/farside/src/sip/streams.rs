//! SIP over TCP, TLS and WebSocket (RFC 3261 §18.3, §26.2; RFC 7118) for the SIP thread: its
//! listeners and connections, on the thread's epoll. TLS (and WSS) is rustls with the `[tls]`
//! certificate (reloaded when its files change, as for TURN); WebSocket's handshake and frames
//! are [`farside_sip::websocket`]'s. Each connection is a flow (RFC 5626): requests for a phone that registered
//! over it go back over it, and so do responses (§18.2.2). Messages are framed by
//! Content-Length ([`farside_sip::frame`]); a CRLF CRLF ping is answered with CRLF (RFC 5626
//! §4.4.1) and a CRLF pong is taken as a keep-alive answer. A stream that breaks the framing,
//! or a peer that stops reading while more than [`MAX_QUEUED`] bytes wait, is closed.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use std::sync::Arc;
use std::time::Instant;

use farside_io::{Epoll, Interest};
use farside_sip::nat::Transport;
use farside_sip::websocket::{self, Handshake};
use farside_sip::{Frame, frame};

use crate::net::tls_reload::TlsFiles;

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
        /// TCP or TLS.
        transport: Transport,
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
    tls: Option<Box<rustls::ServerConnection>>,
    transport: Transport,
    /// WebSocket: the frame reader, once the handshake is done.
    ws: Option<WsState>,
    /// Close once what is queued has been written (a refused handshake, a close frame).
    closing: bool,
    local: SocketAddr,
    remote: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// The SIP thread's TCP side.
pub struct SipTcp {
    /// Each listener and its transport (TCP, TLS, WS or WSS).
    listeners: Vec<(SocketAddr, TcpListener, Transport)>,
    tls: Option<TlsFiles>,
    connections: HashMap<u64, Connection>,
    by_remote: HashMap<SocketAddr, u64>,
    next_id: u64,
    max_connections: usize,
}

impl SipTcp {
    /// Binds the listeners, each `(address, transport)` with TCP, TLS, WS or WSS (IPv6 ones
    /// IPv6-only, as the STUN listeners); TLS and WSS ones need `tls`.
    pub fn bind(
        addresses: &[(SocketAddr, Transport)],
        tls: Option<TlsFiles>,
        max_connections: usize,
    ) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        for &(a, transport) in addresses {
            let l = crate::net::bind::tcp_listener(a).map_err(|e| {
                anyhow::anyhow!("S401 cannot bind SIP {} {a}: {e:#}", name(transport))
            })?;
            if secure(transport) && tls.is_none() {
                anyhow::bail!(
                    "S401 SIP {} listeners need [tls] cert and key",
                    name(transport)
                );
            }
            listeners.push((a, l, transport));
        }
        Ok(SipTcp {
            listeners,
            tls,
            connections: HashMap::new(),
            by_remote: HashMap::new(),
            next_id: 0,
            max_connections,
        })
    }

    /// The listeners: address and `"tcp"`, `"tls"`, `"ws"` or `"wss"`.
    pub fn addresses(&self) -> impl Iterator<Item = (SocketAddr, &'static str)> + '_ {
        self.listeners.iter().map(|(a, _, t)| (*a, name(*t)))
    }

    /// Loads the TLS certificate again if its files changed (every few seconds).
    pub fn refresh(&mut self, now: Instant) {
        if let Some(t) = self.tls.as_mut() {
            t.refresh(now);
        }
    }

    /// Puts the listeners on `epoll`.
    pub fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        for (i, (_, l, _)) in self.listeners.iter().enumerate() {
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
        let Some((local, listener, transport)) = self.listeners.get(i) else {
            return;
        };
        let (local, transport) = (*local, *transport);
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
            let tls = match (secure(transport), &self.tls) {
                (false, _) => None,
                (true, Some(files)) => {
                    match rustls::ServerConnection::new(Arc::clone(files.config())) {
                        Ok(c) => Some(Box::new(c)),
                        Err(_) => continue,
                    }
                }
                (true, None) => continue,
            };
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
                    tls,
                    transport,
                    ws: None,
                    closing: false,
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
        if let Some(tls) = c.tls.as_mut() {
            let limit = 2 * farside_sip::MAX_MESSAGE;
            closed =
                crate::net::tls_io::read_tls(tls, &mut c.stream, &mut buf, &mut c.input, limit)
                    .closed;
        }
        // Read what is there (bounded per pass: the others get their turn).
        for _ in 0..16 {
            if c.tls.is_some() {
                break;
            }
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
        let is_ws = matches!(c.transport, Transport::Ws | Transport::Wss);
        if is_ws && c.ws.is_none() && !c.closing {
            match websocket::handshake(&c.input) {
                Handshake::Incomplete => {}
                Handshake::Accept { response, used: n } => {
                    c.output.extend_from_slice(&response);
                    used = n;
                    c.ws = Some(WsState {
                        reader: websocket::Reader::default(),
                    });
                }
                Handshake::Refuse { response } => {
                    tracing::debug!(
                        "S414 SIP {} connection from {} closed: not a WebSocket upgrade for SIP",
                        name(c.transport),
                        c.remote
                    );
                    c.output.extend_from_slice(&response);
                    c.closing = true;
                    used = c.input.len();
                }
            }
        }
        while let Some(ws) = c.ws.as_mut() {
            if c.closing {
                break;
            }
            match ws.reader.step(&c.input[used..]) {
                Ok((0, _)) => break,
                Ok((n, event)) => {
                    used += n;
                    match event {
                        // RFC 7118 carries RFC 5626's CRLF keep-alives as messages too.
                        Some(websocket::Event::Message(m)) if m == b"\r\n\r\n" => {
                            c.output.extend(websocket::frame(0x1, b"\r\n"));
                            out.push(Inbound::Keepalive);
                        }
                        Some(websocket::Event::Message(m)) if m == b"\r\n" => {
                            out.push(Inbound::Keepalive);
                        }
                        Some(websocket::Event::Message(bytes)) => out.push(Inbound::Message {
                            transport: c.transport,
                            local: c.local,
                            remote: c.remote,
                            bytes,
                        }),
                        Some(websocket::Event::Reply(b)) => c.output.extend(b),
                        Some(websocket::Event::Close(b)) => {
                            c.output.extend(b);
                            c.closing = true;
                        }
                        None => {}
                    }
                }
                Err(websocket::Broken) => {
                    tracing::debug!(
                        "S414 SIP {} connection from {} closed: a frame breaks RFC 6455",
                        name(c.transport),
                        c.remote
                    );
                    closed = true;
                    break;
                }
            }
        }
        if !is_ws {
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
                            transport: c.transport,
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
        }
        c.input.drain(..used);
        if closed || !Self::flush(epoll, id, c) || c.closing {
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
        if c.ws.is_some() {
            c.output.extend(websocket::frame(0x1, bytes));
        } else if matches!(c.transport, Transport::Ws | Transport::Wss) {
            return false; // no handshake yet: nothing may be sent
        } else {
            c.output.extend_from_slice(bytes);
        }
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
        let pending = |c: &Connection| {
            !c.output.is_empty() || c.tls.as_ref().is_some_and(|t| t.wants_write())
        };
        let had = pending(c);
        if let Some(tls) = c.tls.as_mut() {
            // rustls takes what fits its send buffer at a time; the rest waits in `output`.
            loop {
                if !c.output.is_empty() {
                    match tls.writer().write(&c.output) {
                        Ok(n) => {
                            c.output.drain(..n);
                        }
                        Err(_) => return false,
                    }
                }
                let mut blocked = false;
                while tls.wants_write() {
                    match tls.write_tls(&mut c.stream) {
                        Ok(0) => return false,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                if blocked || c.output.is_empty() {
                    break;
                }
            }
        } else {
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
        }
        if c.output.len() > MAX_QUEUED {
            return false;
        }
        if had || pending(c) {
            let interest = Interest {
                read: true,
                write: pending(c),
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

fn name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        Transport::Ws => "ws",
        Transport::Wss => "wss",
    }
}

/// Whether it runs over TLS.
fn secure(t: Transport) -> bool {
    matches!(t, Transport::Tls | Transport::Wss)
}

/// WebSocket connection state: the reader once the handshake is done.
struct WsState {
    reader: websocket::Reader,
}
