//! STUN over TCP (RFC 8489 §6.2.2): a task per connection on the control-plane runtime.
//!
//! Messages are framed by their own length field. A connection that sends something that is
//! not STUN, announces a message longer than [`MAX_MESSAGE`], or takes longer than
//! `stun.tcp_idle_timeout` to send a message or to take its answer is closed. Connections are
//! capped in all (`stun.tcp_max_connections`) and per client address
//! (`stun.tcp_max_connections_per_ip`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use farside_stun::HEADER_LEN;
use farside_stun::binding::{BindingServer, DropReason, Outcome, Received, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::runtime::lock::lock;
use crate::runtime::log_once;
use crate::telemetry::Metrics;

/// Largest STUN message accepted over TCP, in bytes (header included).
pub const MAX_MESSAGE: usize = 2048;

/// Binds a TCP listener for the tokio runtime (see [`crate::net::bind::tcp_listener`]).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::from_std(crate::net::bind::tcp_listener(addr)?).context("register TCP listener")
}

/// Limits shared by every STUN TCP listener of the server.
#[derive(Debug)]
pub struct TcpLimits {
    /// Connections open at once, in all.
    slots: Arc<Semaphore>,
    /// Connections open at once per client IP address.
    per_ip: usize,
    open_per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// A read of a whole message, or a write of an answer, must finish within this.
    idle: Duration,
}

impl TcpLimits {
    /// `max` connections in all, `per_ip` from one address, `idle` for any read or write.
    pub fn new(max: usize, per_ip: usize, idle: Duration) -> Arc<Self> {
        Arc::new(TcpLimits {
            slots: Arc::new(Semaphore::new(max)),
            per_ip,
            open_per_ip: Mutex::new(HashMap::new()),
            idle,
        })
    }

    /// Takes a place for a connection from `ip`, or says no.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let mut open = lock(&self.open_per_ip);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return None;
        }
        *n += 1;
        Some(Admitted {
            limits: Arc::clone(self),
            ip,
            _permit: permit,
        })
    }
}

/// A connection's place, given back on drop.
struct Admitted {
    limits: Arc<TcpLimits>,
    ip: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = lock(&self.limits.open_per_ip);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections on `listener` forever.
pub async fn serve(
    listener: TcpListener,
    server: Arc<BindingServer>,
    metrics: Arc<Metrics>,
    limits: Arc<TcpLimits>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("S104 TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(place) = limits.admit(remote.ip()) else {
            metrics.tcp.refused.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        metrics.tcp.accepted.fetch_add(1, Relaxed);
        let server = Arc::clone(&server);
        let metrics = Arc::clone(&metrics);
        let idle = limits.idle;
        tokio::spawn(async move {
            metrics.tcp.open.fetch_add(1, Relaxed);
            connection(stream, remote, &server, &metrics, idle).await;
            metrics.tcp.open.fetch_sub(1, Relaxed);
            drop(place);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    remote: SocketAddr,
    server: &BindingServer,
    metrics: &Metrics,
    idle: Duration,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let counters = &metrics.tcp_stun;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out = vec![0u8; MAX_MESSAGE];
    loop {
        match tokio::time::timeout(idle, stream.read_exact(&mut buf[..HEADER_LEN])).await {
            Err(_) => {
                metrics.tcp.idle_closed.fetch_add(1, Relaxed);
                return;
            }
            Ok(Err(_)) => return, // closed or reset
            Ok(Ok(_)) => {}
        }
        if buf[0] & 0xC0 != 0 {
            counters.dropped(DropReason::NotStun);
            log_once::dropped(DropReason::NotStun, remote);
            return;
        }
        let len = HEADER_LEN + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len > MAX_MESSAGE {
            counters.dropped(DropReason::Oversized);
            log_once::dropped(DropReason::Oversized, remote);
            return;
        }
        match tokio::time::timeout(idle, stream.read_exact(&mut buf[HEADER_LEN..len])).await {
            Err(_) => {
                metrics.tcp.idle_closed.fetch_add(1, Relaxed);
                return;
            }
            Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        let outcome = server.handle(
            Received {
                transport: Transport::Tcp,
                local,
                remote,
                bytes: &buf[..len],
            },
            &mut out,
        );
        counters.record(Transport::Tcp, &outcome);
        match outcome {
            Outcome::Respond(r) => {
                // A client that sends but never reads would otherwise hold its place forever.
                match tokio::time::timeout(idle, stream.write_all(&out[..r.len])).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        metrics.tcp.idle_closed.fetch_add(1, Relaxed);
                        return;
                    }
                }
            }
            Outcome::Drop(reason) => {
                log_once::dropped(reason, remote);
                // Framing is intact (we read exactly one message), so the stream can go on
                // unless the bytes were not STUN at all.
                if matches!(reason, DropReason::BadLength | DropReason::Malformed) {
                    return;
                }
            }
            // `handle` without partner state never forwards or hears partners.
            Outcome::Forward(_) | Outcome::PartnerHello(_) => {}
        }
    }
}
