//! Telemetry: the counters every part keeps, registered in one [`Metrics`], and their
//! Prometheus rendering. Label sets are fixed at compile time, so no remote peer can make the
//! metrics grow. Nothing here imports a protocol shell: the shells import their counters from
//! here.

pub mod log_ring;
mod prometheus;
pub mod rtp;
pub mod sip;
pub mod sources;
pub mod stream;
pub mod stun;
pub mod stun_seen;
pub mod turn;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use farside_stun::partner::PartnerBook;

use crate::runtime::lock::lock;
use rtp::RtpCounters;
use sip::SipCounters;
use stream::StreamCounters;
use stun::StunCounters;
use turn::TurnMetrics;

/// Everything the admin endpoint reports.
#[derive(Debug)]
pub struct Metrics {
    pub(super) workers: Mutex<Vec<Arc<StunCounters>>>,
    /// Counters of STUN over TCP.
    pub tcp_stun: Arc<StunCounters>,
    /// STUN and TURN connections over TCP and TLS.
    pub stun_streams: Arc<StreamCounters>,
    /// SIP connections, when SIP is on.
    pub(super) sip_streams: Mutex<Option<Arc<StreamCounters>>>,
    pub(super) sockets: Mutex<Vec<(SocketAddr, UdpSocket)>>,
    pub(super) partners: Mutex<Option<Arc<PartnerBook>>>,
    pub(super) turn: Mutex<Option<Arc<TurnMetrics>>>,
    pub(super) sip: Mutex<Option<Arc<SipCounters>>>,
    pub(super) rtp: Mutex<Option<Arc<RtpCounters>>>,
    /// Admin API requests refused for a missing or wrong token.
    pub admin_refused: std::sync::atomic::AtomicU64,
    /// Dashboard logins refused: a wrong password, or a source locked out.
    pub admin_login_failures: std::sync::atomic::AtomicU64,
    /// Per-source statistics (the dashboard's table, not exposed as metrics).
    pub sources: Arc<sources::Sources>,
    /// Which addresses the STUN service answered lately (the SIP ALG check's).
    pub stun_seen: Arc<stun_seen::StunSeen>,
}

/// The live gauges the API's status reports (what runs has `Some`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Live {
    /// TURN allocations.
    pub allocations: Option<u64>,
    /// SIP bindings (registered contacts).
    pub bindings: Option<u64>,
    /// Calls on the RTP relay.
    pub calls: Option<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            workers: Mutex::default(),
            tcp_stun: Arc::default(),
            stun_streams: Arc::new(StreamCounters::new("STUN")),
            sip_streams: Mutex::default(),
            sockets: Mutex::default(),
            partners: Mutex::default(),
            turn: Mutex::default(),
            sip: Mutex::default(),
            rtp: Mutex::default(),
            admin_refused: Default::default(),
            admin_login_failures: Default::default(),
            sources: Arc::new(sources::Sources::new(1000)),
            stun_seen: Arc::default(),
        }
    }
}

impl Metrics {
    /// Metrics whose per-source tables keep `source_table_size` addresses per worker.
    pub fn new(source_table_size: usize) -> Metrics {
        Metrics {
            sources: Arc::new(sources::Sources::new(source_table_size)),
            ..Metrics::default()
        }
    }
}

impl Metrics {
    /// Includes SIP's connection counters in every scrape.
    pub fn register_sip_streams(&self, counters: Arc<StreamCounters>) {
        *lock(&self.sip_streams) = Some(counters);
    }

    /// A new counter set for one worker, included in every scrape.
    pub fn register_worker(&self) -> Arc<StunCounters> {
        let c = Arc::new(StunCounters::default());
        lock(&self.workers).push(Arc::clone(&c));
        c
    }

    /// Reports the TURN relay's counters.
    pub fn register_turn(&self, counters: Arc<TurnMetrics>) {
        *lock(&self.turn) = Some(counters);
    }

    /// Includes the SIP counters in every scrape.
    pub fn register_sip(&self, counters: Arc<SipCounters>) {
        *lock(&self.sip) = Some(counters);
    }

    /// Includes the RTP relay's counters in every scrape.
    pub fn register_rtp(&self, counters: Arc<RtpCounters>) {
        *lock(&self.rtp) = Some(counters);
    }

    /// Reports partner liveness (partner mode).
    pub fn register_partners(&self, book: Arc<PartnerBook>) {
        *lock(&self.partners) = Some(book);
    }

    /// Watches a UDP socket's kernel counters (pass a `try_clone` of it).
    pub fn register_socket(&self, local: SocketAddr, socket: UdpSocket) {
        lock(&self.sockets).push((local, socket));
    }

    /// Kernel drop counts and receive buffer sizes, summed per local address.
    pub fn kernel_socket_stats(&self) -> Vec<(SocketAddr, farside_io::UdpSocketStats)> {
        let mut out: Vec<(SocketAddr, farside_io::UdpSocketStats)> = Vec::new();
        for (addr, sock) in lock(&self.sockets).iter() {
            let Ok(s) = farside_io::socket_stats(sock) else {
                continue;
            };
            match out.iter_mut().find(|(a, _)| a == addr) {
                Some((_, acc)) => {
                    acc.drops += s.drops;
                    acc.recv_queued += s.recv_queued;
                    acc.recv_buffer = acc.recv_buffer.max(s.recv_buffer);
                }
                None => out.push((*addr, s)),
            }
        }
        out
    }

    /// The live gauges, as the API's status reports them.
    pub fn live(&self) -> Live {
        use std::sync::atomic::Ordering::Relaxed;
        Live {
            allocations: lock(&self.turn).as_ref().map(|t| {
                lock(&t.workers)
                    .iter()
                    .map(|w| w.allocations.load(Relaxed) as u64)
                    .sum()
            }),
            bindings: lock(&self.sip).as_ref().map(|c| c.bindings.load(Relaxed)),
            calls: lock(&self.rtp).as_ref().map(|c| c.calls.load(Relaxed)),
        }
    }

    /// The RTP relay's counters by name, when it runs (the dashboard's calls page).
    pub fn rtp_counters(&self) -> Option<Vec<(&'static str, u64)>> {
        use std::sync::atomic::Ordering::Relaxed;
        let guard = lock(&self.rtp);
        let c = guard.as_ref()?;
        Some(vec![
            ("calls open", c.calls.load(Relaxed)),
            ("packets relayed", c.relayed.load(Relaxed)),
            ("bytes relayed", c.relayed_bytes.load(Relaxed)),
            ("refused: foreign source", c.foreign_source.load(Relaxed)),
            (
                "dropped: no destination yet",
                c.no_destination.load(Relaxed),
            ),
            ("dropped: refused peer", c.denied_peer.load(Relaxed)),
            ("dropped: no call on the port", c.no_stream.load(Relaxed)),
            (
                "dropped by the kernel (relay behind)",
                c.overflow.load(Relaxed),
            ),
            ("send failures", c.send_failed.load(Relaxed)),
            ("port pairs bound", c.port_pairs.load(Relaxed)),
            ("port pairs free", c.port_pairs_free.load(Relaxed)),
        ])
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        prometheus::render(self)
    }
}
