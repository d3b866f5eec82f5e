//! STUN over TCP (RFC 8489 §6.2.2): a task per connection on the control-plane runtime.
//!
//! Messages are framed by their own length field. A connection that sends something that is
//! not STUN, announces a message longer than [`MAX_MESSAGE`], or stays silent for
//! `stun.tcp_idle_timeout` is closed. Connections are capped by `stun.tcp_max_connections`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use farside_stun::HEADER_LEN;
use farside_stun::binding::{BindingServer, DropReason, Outcome, Received, Transport};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::log_once;
use crate::metrics::Metrics;

/// Largest STUN message accepted over TCP, in bytes (header included).
pub const MAX_MESSAGE: usize = 2048;

/// Binds a TCP listener; IPv6 listeners are IPv6-only so `[::]` and `0.0.0.0` coexist.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("S102 cannot bind TCP {addr}"))?;
    s.listen(1024)?;
    TcpListener::from_std(s.into()).context("register TCP listener")
}

/// Accepts connections on `listener` forever.
pub async fn serve(
    listener: TcpListener,
    server: Arc<BindingServer>,
    metrics: Arc<Metrics>,
    max_connections: usize,
    idle: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.tcp.refused.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        metrics.tcp.accepted.fetch_add(1, Relaxed);
        let server = Arc::clone(&server);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            metrics.tcp.open.fetch_add(1, Relaxed);
            connection(stream, remote, &server, &metrics, idle).await;
            metrics.tcp.open.fetch_sub(1, Relaxed);
            drop(permit);
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
                if stream.write_all(&out[..r.len]).await.is_err() {
                    return;
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
        }
    }
}
