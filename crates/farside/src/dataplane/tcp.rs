//! STUN and TURN over TCP and TLS (RFC 8489 §6.2.2, RFC 8656 §3.1, §12.5): one thread owns the
//! `stun.listen` TCP listeners and the `[tls] listen` ones, their connections (a
//! [`Pool`](crate::net::stream::Pool), framed by [`farside_turn::channel_data::stream_frame`]),
//! and, with TURN on, the relay sockets of their allocations, on one `epoll` set. Binding
//! requests go to the STUN responder; with TURN on, everything else goes to this thread's own
//! [`TurnServer`](farside_turn::TurnServer), and an allocation ends with its connection.
//!
//! TCP allocations (RFC 6062) live here too: their listeners, their connections with peers,
//! and the client data connections spliced to them (`peers`).

mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use farside_io::Epoll;
use farside_stun::binding::{BindingServer, Outcome, Received, Transport};
use farside_time::Timestamp;
use farside_turn::{ConnectionId, FiveTuple, TurnServer};

use crate::dataplane::relay_ports::RELAY_TOKEN_BASE;
use crate::dataplane::turn::{TcpAction, TurnShared, TurnWorker};
use crate::net::stream::{self, After, Kind, Meta, Pool, Urgency};
use crate::net::tls_reload::TlsFiles;
use crate::runtime::{clock, log_once};
use crate::telemetry::stream::StreamCounters;
use crate::telemetry::stun::StunCounters;

/// Tokens of the client connections' pool start here (relay sockets and TCP relay listeners
/// are from 2^32; peer connections from 2^40).
const POOL_TOKENS: u64 = 1 << 48;
/// Tokens of TCP connections with peers (RFC 6062) start here.
const PEER_TOKEN_BASE: u64 = 1 << 40;
/// Largest STUN answer over a stream (the Binding responder's).
const MAX_ANSWER: usize = 2048;
/// How long a pass waits at most, so that shutdown and timers are seen.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// What the thread serves and with what.
pub struct StreamSettings {
    /// TCP listeners (`stun.listen` with `stun.tcp`).
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners (`[tls] listen`).
    pub tls_addresses: Vec<SocketAddr>,
    /// The certificate for them.
    pub tls: Option<TlsFiles>,
    /// The limits of the connections.
    pub limits: stream::Limits,
    /// The connections' counters.
    pub counters: Arc<StreamCounters>,
    /// STUN over TCP's counters.
    pub stun_counters: Arc<StunCounters>,
}

/// Binds the listeners and starts the thread; `turn` when TURN is on.
pub fn spawn(
    settings: StreamSettings,
    turn: Option<Arc<TurnShared>>,
    binding: Arc<BindingServer>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut listeners: Vec<(SocketAddr, Kind)> =
        settings.tcp.iter().map(|&a| (a, Kind::StunTcp)).collect();
    if settings.tls.is_some() {
        listeners.extend(settings.tls_addresses.iter().map(|&a| (a, Kind::StunTls)));
    }
    let pool = Pool::bind(
        &listeners,
        settings.tls,
        settings.limits,
        settings.counters,
        POOL_TOKENS,
    )?;
    let what = if turn.is_some() {
        "STUN and TURN"
    } else {
        "STUN"
    };
    for (a, kind) in pool.addresses() {
        tracing::info!("S002 {what} listening on {} {a}", kind.name());
    }
    let worker = turn.as_ref().map(|t| TurnWorker::new(t));
    let epoll = Epoll::new()?;
    std::thread::Builder::new()
        .name("stream".into())
        .spawn(move || {
            let mut t = StreamThread {
                epoll,
                pool,
                worker,
                binding,
                stun: settings.stun_counters,
                actions: Vec::new(),
                answer: vec![0u8; MAX_ANSWER],
                scratch: vec![0u8; 16 * 1024],
                peers: HashMap::new(),
                peer_of: HashMap::new(),
                next_peer: 0,
            };
            if let Err(e) = t.run(&shutdown) {
                tracing::error!("S103 the STUN and TURN stream thread stopped: {e:#}");
            }
        })
        .context("spawn the STUN and TURN stream thread")
}

struct StreamThread {
    epoll: Epoll,
    /// The client connections.
    pool: Pool,
    /// The TURN core, with TURN on.
    worker: Option<TurnWorker>,
    binding: Arc<BindingServer>,
    stun: Arc<StunCounters>,
    /// RFC 6062 work the messages of a pass left: (connection, action).
    actions: Vec<(u64, TcpAction)>,
    /// The Binding responder's output.
    answer: Vec<u8>,
    scratch: Vec<u8>,
    /// TCP connections with peers (RFC 6062), by token.
    peers: HashMap<u64, peers::Peer>,
    peer_of: HashMap<ConnectionId, u64>,
    next_peer: u64,
}

impl StreamThread {
    fn run(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        self.pool.register(&self.epoll)?;
        let mut ready = Vec::with_capacity(256);
        let mut last_sweep = clock::now();
        while !shutdown.load(Ordering::Relaxed) {
            ready.clear();
            let wait = match self.pool.has_resumed() {
                true => Duration::ZERO,
                false => MAX_WAIT,
            };
            self.epoll.wait(wait, |t| ready.push(t))?;
            ready.extend(self.pool.take_resumed());
            let now = clock::now();
            if let Some(w) = self.worker.as_mut() {
                w.tick(now);
            }
            for &token in &ready {
                if self.pool.owns(token) {
                    self.client_ready(now, token);
                } else if token >= PEER_TOKEN_BASE {
                    self.peer_ready(now, token);
                } else if token >= RELAY_TOKEN_BASE {
                    let listener = self
                        .worker
                        .as_ref()
                        .is_some_and(|w| w.listener_by_token(token).is_some());
                    if listener {
                        self.accept_peers(now, token);
                    } else {
                        self.relay_readable(now, token);
                    }
                }
            }
            self.after_pass(now);
            if now.duration_since(last_sweep) >= Duration::from_secs(1) {
                last_sweep = now;
                let worker = &self.worker;
                self.pool.sweep(&self.epoll, now, &|meta| {
                    worker
                        .as_ref()
                        .is_some_and(|w| w.has_allocation(five_tuple(meta)))
                });
                self.closed();
            }
        }
        Ok(())
    }

    /// What a pass leaves to do: RFC 6062 actions, spliced bytes, closed connections, queued
    /// data for peers, new relay sockets, the core's own notices, slow readers' output.
    fn after_pass(&mut self, now: Timestamp) {
        for (conn, action) in std::mem::take(&mut self.actions) {
            match action {
                TcpAction::Connect { id, relayed, peer } => {
                    self.start_connect(now, id, relayed, peer);
                }
                TcpAction::Bind(id) => self.bind_data(now, conn, id),
            }
        }
        for id in self.pool.take_raw() {
            self.splice_to_peer(now, id);
            if self.pool.get(id).is_some_and(|c| c.ended) {
                self.data_ended(now, id);
            }
        }
        self.closed();
        if let Some(w) = self.worker.as_mut() {
            w.flush_to_peers();
            for (fd, token) in w.take_fresh() {
                if let Err(e) = self.epoll.add(fd, token) {
                    tracing::warn!("S104 cannot watch a relay socket: {e}");
                }
            }
        }
        self.notices(now);
        self.pool.flush_all(&self.epoll, now);
        self.flush_peers(now);
        self.closed();
    }

    /// A client connection (or a listener) is ready: its messages go to the cores.
    fn client_ready(&mut self, now: Timestamp, token: u64) {
        let StreamThread {
            epoll,
            pool,
            worker,
            binding,
            stun,
            actions,
            answer,
            ..
        } = self;
        pool.ready(epoll, now, token, &mut |meta, frame, out| {
            let transport = meta.kind.turn_transport();
            if let Some(w) = worker.as_mut()
                && TurnServer::wants(frame)
            {
                // ChannelData arrives padded on streams; the core takes the message as framed.
                if let Some(t) = w.client(now, transport, meta.local, meta.remote, frame) {
                    out.push(&w.out[..t.len]);
                }
                return match w.take_action() {
                    Some(a @ TcpAction::Bind(_)) => {
                        actions.push((meta.id, a));
                        After::Raw
                    }
                    Some(a) => {
                        actions.push((meta.id, a));
                        After::Continue
                    }
                    None => After::Continue,
                };
            }
            let outcome = binding.handle(
                Received {
                    transport: Transport::Tcp,
                    local: meta.local,
                    remote: meta.remote,
                    bytes: frame,
                },
                answer,
            );
            stun.record(Transport::Tcp, &outcome);
            match outcome {
                Outcome::Respond(r) => out.push(&answer[..r.len]),
                Outcome::Drop(reason) => {
                    log_once::dropped(reason, meta.remote);
                    if reason.breaks_stream() {
                        return After::Close;
                    }
                }
                // `handle` without partner state never forwards or hears partners.
                Outcome::Forward(_) | Outcome::PartnerHello(_) => {}
            }
            After::Continue
        });
    }

    /// Connections that closed: their allocations end, or their splice does.
    fn closed(&mut self) {
        for c in self.pool.take_closed() {
            if c.raw {
                // RFC 6062 §5.4: either end of a splice closing closes the other.
                if let Some(peer) = c.tag {
                    self.close_peer(peer);
                }
                continue;
            }
            if let Some(w) = self.worker.as_mut() {
                w.connection_closed(five_tuple(&c.meta));
            }
        }
    }

    /// Peer data for TCP clients, queued straight from the core's output buffer.
    fn relay_readable(&mut self, now: Timestamp, token: u64) {
        let StreamThread {
            epoll,
            pool,
            worker,
            ..
        } = self;
        let Some(w) = worker.as_mut() else {
            return;
        };
        w.peer_readable(now, token, |t, body| {
            pool.send(epoll, now, t.from, t.to, body, Urgency::Droppable);
        });
    }

    /// Sends a message the core wrote in its output buffer to a client's control connection.
    fn send_control(&mut self, now: Timestamp, t: farside_turn::Transmit) {
        let StreamThread {
            epoll,
            pool,
            worker,
            ..
        } = self;
        if let Some(w) = worker.as_ref() {
            pool.send(epoll, now, t.from, t.to, &w.out[..t.len], Urgency::Required);
        }
    }
}

/// The 5-tuple of a client connection.
fn five_tuple(meta: &Meta) -> FiveTuple {
    FiveTuple {
        client: meta.remote,
        server: meta.local,
        transport: meta.kind.turn_transport(),
    }
}
