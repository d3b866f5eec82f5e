//! Audio-like streams and what came back of them: RTP-sized packets every 20 ms, each one's
//! round trip, loss, the interarrival jitter and the E-model's MOS. Two paths use it: through
//! the TURN relay ([`super::turn`]) and straight to the server ([`direct`]).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use farside_stun::attributes::Software;
use farside_stun::{Class, Header, MessageBuilder, MessageType, Method, TransactionId};

use super::report::Audio;

/// One packet every 20 ms.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// 172 bytes: G.711's RTP for 20 ms.
pub const PACKET_BYTES: usize = 172;

/// What marks the doctor's direct-path requests (the first 4 bytes of their transaction id; the
/// other 8 are the sequence number).
const DIRECT_TAG: &[u8; 4] = b"fsdr";

/// The direct path to the server, not relayed: for `seconds`, a STUN Binding request of RTP's
/// size (its SOFTWARE attribute pads it to 172 bytes) every 20 ms to the server's STUN port,
/// which answers each from where it came (RFC 8489 §6.3). The figures are those of media
/// between this network and the server's.
pub fn direct(server: SocketAddr, local: IpAddr, seconds: f64) -> anyhow::Result<Audio> {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
    // 20 (header) + 4 (attribute header) + 148 = 172.
    let padding = "farside doctor: an RTP-sized STUN request ".repeat(4);
    let padding = &padding[..148];
    let request = |seq: u64| {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(DIRECT_TAG);
        id[4..].copy_from_slice(&seq.to_be_bytes());
        let mut out = vec![0u8; 512];
        let mut b = MessageBuilder::new(
            &mut out,
            MessageType::new(Class::Request, Method::BINDING),
            Header::new(TransactionId(id)),
        )
        .map_err(|_| anyhow::anyhow!("buffer"))?;
        b.add(&Software(padding))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        let n = b.finish();
        out.truncate(n);
        Ok(out)
    };
    let answer_to = |datagram: &[u8], from: SocketAddr| {
        (from == server && datagram.len() >= 20 && &datagram[8..12] == DIRECT_TAG)
            .then(|| u64::from_be_bytes(datagram[12..20].try_into().unwrap_or_default()))
    };
    stream(
        &socket,
        server,
        seconds,
        "direct path to the server (STUN echo)",
        request,
        answer_to,
    )
}

/// Sends `packet(n)` from `socket` to `to` every 20 ms for `seconds`, and reads what comes
/// back until half a second after the last: `echo_of` tells which packet a datagram from an
/// address echoes, if any. The figures, named `path`.
pub fn stream(
    socket: &UdpSocket,
    to: SocketAddr,
    seconds: f64,
    path: &str,
    mut packet: impl FnMut(u64) -> anyhow::Result<Vec<u8>>,
    echo_of: impl Fn(&[u8], SocketAddr) -> Option<u64>,
) -> anyhow::Result<Audio> {
    socket.set_read_timeout(Some(Duration::from_millis(2)))?;
    let count = (seconds.max(0.1) / PACKET_INTERVAL.as_secs_f64()).round() as u64;
    let mut sent_at = vec![None::<Instant>; count as usize];
    let mut back = Echoes::default();
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let end = start + PACKET_INTERVAL * (count as u32) + Duration::from_millis(500);
    let mut next = 0u64;
    while Instant::now() < end {
        if next < count && Instant::now() >= start + PACKET_INTERVAL * (next as u32) {
            socket.send_to(&packet(next)?, to)?;
            sent_at[next as usize] = Some(Instant::now());
            next += 1;
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let now = Instant::now();
            if let Some(seq) = echo_of(&buf[..n], from)
                && let Some(Some(at)) = sent_at.get(seq as usize)
            {
                back.arrived(seq, now.duration_since(*at));
            }
        }
    }
    Ok(back.audio(count, path))
}

/// Echoes that came back: each one's round trip, and the interarrival jitter.
#[derive(Debug, Default)]
pub struct Echoes {
    seen: std::collections::HashSet<u64>,
    rtts: Vec<Duration>,
    last_rtt: Option<Duration>,
    jitter_s: f64,
}

impl Echoes {
    /// The echo of packet `seq` came back after `rtt` (a duplicate is ignored).
    pub fn arrived(&mut self, seq: u64, rtt: Duration) {
        if !self.seen.insert(seq) {
            return;
        }
        // RFC 3550 §6.4.1 over the round trip: the difference of two packets' transit times.
        if let Some(last) = self.last_rtt {
            let d = (rtt.as_secs_f64() - last.as_secs_f64()).abs();
            self.jitter_s += (d - self.jitter_s) / 16.0;
        }
        self.last_rtt = Some(rtt);
        self.rtts.push(rtt);
    }

    /// The figures, `sent` packets having gone over `path`.
    pub fn audio(mut self, sent: u64, path: &str) -> Audio {
        self.rtts.sort();
        let received = self.rtts.len() as u64;
        let median = self
            .rtts
            .get(self.rtts.len() / 2)
            .copied()
            .unwrap_or_default();
        let loss = match sent {
            0 => 0.0,
            s => (s.saturating_sub(received)) as f64 / s as f64,
        };
        Audio {
            path: path.into(),
            sent,
            received,
            loss_percent: loss * 100.0,
            rtt_ms: median.as_secs_f64() * 1000.0,
            jitter_ms: self.jitter_s * 1000.0,
            mos: farside_media::quality::call_mos(
                median,
                Duration::from_secs_f64(self.jitter_s),
                loss,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_give_loss_median_and_jitter() {
        let mut e = Echoes::default();
        for (seq, ms) in [(0, 10), (1, 12), (2, 10), (2, 10), (4, 30)] {
            e.arrived(seq, Duration::from_millis(ms));
        }
        let a = e.audio(5, "test");
        assert_eq!((a.sent, a.received), (5, 4), "the duplicate counts once");
        assert!((a.loss_percent - 20.0).abs() < 1e-9);
        assert!((a.rtt_ms - 12.0).abs() < 1e-9, "median of 10, 10, 12, 30");
        // |12−10|/16, then |10−12|, then |30−10|: J = 0.125, 0.242, 1.477 ms.
        assert!((a.jitter_ms - 1.477).abs() < 0.01, "{}", a.jitter_ms);
        assert!(a.mos < 4.0, "20 % loss: {}", a.mos);
    }
}
