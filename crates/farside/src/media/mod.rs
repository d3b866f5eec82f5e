//! The media shell: the RTP relay's data-plane workers, each with its slice of the port pairs
//! and its own `farside_media::relay::Relay` (`worker.rs`), and the control thread that serves
//! the ng listeners and the SIP server's line on them (`control.rs`).

mod control;
pub mod link;
mod ports;
mod worker;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use anyhow::Context as _;
use farside_media::relay::{Relay, RelayConfig};

use crate::telemetry::rtp::RtpCounters;
use ports::PortPool;
use worker::Worker;

/// What the media threads are started with.
pub struct MediaShell {
    /// The relay's settings (the address it writes into SDP among them).
    pub relay: RelayConfig,
    /// The addresses the port pairs are bound on.
    pub bind: Vec<IpAddr>,
    /// The port range.
    pub ports: (u16, u16),
    /// The ng listeners.
    pub ng: Vec<SocketAddr>,
    /// The media side of the SIP server's line (`link::pair`), if SIP relays.
    pub link: Option<UnixDatagram>,
    /// Each relay socket's receive buffer (bytes asked of the kernel).
    pub receive_buffer: usize,
    /// Data-plane workers (at most one per pair of the range).
    pub workers: usize,
}

/// Binds the ng listeners and starts the workers and the control thread.
pub fn spawn(
    shell: MediaShell,
    counters: Arc<RtpCounters>,
    board: &crate::control::sessions::CallBoard,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut ng = Vec::new();
    for &a in &shell.ng {
        let s = UdpSocket::bind(a)
            .with_context(|| format!("S501 cannot bind rtp.ng_listen udp:{a}"))?;
        s.set_nonblocking(true)?;
        tracing::info!("S500 RTP relay: ng control on udp {a}");
        ng.push(s);
    }
    let pools = PortPool::split(
        &shell.bind,
        shell.ports,
        shell.workers,
        shell.receive_buffer,
    );
    let list = |a: &[IpAddr]| {
        a.iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    tracing::info!(
        "S500 RTP relay: media on {} ports {}-{} ({} workers), written into SDP as {}{}",
        list(&shell.bind),
        shell.ports.0,
        shell.ports.1,
        pools.len(),
        list(&shell.relay.addresses),
        if shell.link.is_some() {
            "; serving Farside's SIP server (the calls [rtp] relay picks, and its echo service)"
        } else {
            ""
        }
    );
    let mut handles = Vec::new();
    let mut workers = Vec::new();
    for (i, pool) in pools.into_iter().enumerate() {
        let (worker, epoll) = Worker::new(Relay::new(shell.relay.clone()), pool)
            .context("S502 the RTP relay's epoll")?;
        let worker = Arc::new(worker);
        workers.push(Arc::clone(&worker));
        let (c, stop) = (Arc::clone(&counters), Arc::clone(&shutdown));
        let published = board.join();
        handles.push(
            std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || {
                    if let Err(e) = worker::run(&worker, epoll, &c, &published, &stop) {
                        tracing::error!("S502 RTP relay worker {i} stopped: {e:#}");
                    }
                })
                .context("spawn an RTP relay worker")?,
        );
    }
    let link = shell.link;
    handles.push(
        std::thread::Builder::new()
            .name("media-control".into())
            .spawn(move || {
                if let Err(e) = control::run(&ng, link.as_ref(), &workers, &counters, &shutdown) {
                    tracing::error!("S502 the RTP relay's control thread stopped: {e:#}");
                }
            })
            .context("spawn the RTP relay's control thread")?,
    );
    Ok(handles)
}
