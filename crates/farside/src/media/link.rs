//! The SIP server's line to the RTP relay's control thread: rtpengine's ng protocol over a
//! Unix datagram socket pair. Farside's own calls take the path Kamailio's rtpengine module
//! takes (the same requests, answered by the same `farside_media::control`), without a
//! network socket anyone else could reach.
//!
//! Failure rule: a request not answered within [`WAIT`] (the relay's control thread stopped, or is far
//! behind) leaves the SDP as it came, so the call still rings; the SIP server counts it
//! (`farside_sip_media_total{result="passed"}`), and the first is logged (S505). A late reply is
//! recognised by its cookie and skipped.

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use farside_media::ng::bencode::Value;
use farside_media::ng::request;
use farside_sip::media::{MediaRelay, Passing};
use farside_time::Timestamp;

/// How long the SIP thread waits for the relay's reply.
const WAIT: Duration = Duration::from_millis(100);

/// The SIP thread's end of the line.
#[derive(Debug)]
pub struct RelayLink {
    socket: UnixDatagram,
    /// The next request's cookie.
    cookie: u64,
    buf: Vec<u8>,
}

/// A line: the SIP thread's end, and the relay control thread's (which it serves like an ng socket).
pub fn pair() -> std::io::Result<(RelayLink, UnixDatagram)> {
    let (sip, media) = UnixDatagram::pair()?;
    media.set_nonblocking(true)?;
    Ok((
        RelayLink {
            socket: sip,
            cookie: 0,
            buf: vec![0; 65_536],
        },
        media,
    ))
}

impl RelayLink {
    /// Whether `deadline` passed; else the next receive waits until it at most.
    fn timed_out(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err()
    }

    /// Sends `entries` as a request under a fresh cookie, which it returns if the send went.
    fn send(&mut self, entries: Vec<(&[u8], Value<'_>)>) -> Option<String> {
        self.cookie = self.cookie.wrapping_add(1);
        let cookie = format!("f{}", self.cookie);
        let datagram = request(cookie.as_bytes(), entries);
        self.socket.send(&datagram).is_ok().then_some(cookie)
    }

    /// Sends `entries` as a request; the reply's `sdp` if its `result` is `ok`.
    fn ask(&mut self, entries: Vec<(&[u8], Value<'_>)>) -> Option<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        let cookie = self.send(entries);
        let sent = cookie.is_some();
        let cookie = cookie.unwrap_or_default();
        while sent && !self.timed_out(deadline) {
            let Ok(n) = self.socket.recv(&mut self.buf) else {
                break;
            };
            let reply = &self.buf[..n];
            let Some(dict) = reply
                .strip_prefix(cookie.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            else {
                continue; // a reply to a request given up on
            };
            let dict = Value::parse(dict).ok()?;
            let ok = dict.get("result").and_then(Value::as_bytes) == Some(b"ok".as_slice());
            if !ok {
                let reason = dict.get("error-reason").and_then(Value::as_bytes);
                tracing::debug!(
                    "S505 the RTP relay refused a call's SDP: {}; it passes as it came",
                    String::from_utf8_lossy(reason.unwrap_or_default())
                );
                return None;
            }
            return dict
                .get("sdp")
                .and_then(Value::as_bytes)
                .map(<[u8]>::to_vec);
        }
        crate::runtime::log_once::relay_unanswered(WAIT);
        None
    }
}

/// `received-from` as rtpengine reads it: the family, then the address.
fn family(ip: IpAddr) -> &'static [u8] {
    match ip {
        IpAddr::V4(_) => b"IP4",
        IpAddr::V6(_) => b"IP6",
    }
}

fn entries<'a>(
    command: &'static [u8],
    sdp: &Passing<'a>,
    source: &'a str,
) -> Vec<(&'static [u8], Value<'a>)> {
    let mut e = vec![
        (b"command".as_slice(), Value::Bytes(command)),
        (b"call-id", Value::Bytes(sdp.call_id)),
        (b"from-tag", Value::Bytes(sdp.from_tag)),
        (b"sdp", Value::Bytes(sdp.sdp)),
        // Phones that offer ICE candidates would try them around the relay.
        (b"ICE", Value::Bytes(b"remove")),
    ];
    if let Some(tag) = sdp.to_tag {
        e.push((b"to-tag", Value::Bytes(tag)));
    }
    if let Some(ip) = sdp.source {
        e.push((
            b"received-from",
            Value::List(vec![
                Value::Bytes(family(ip)),
                Value::Bytes(source.as_bytes()),
            ]),
        ));
    }
    e
}

impl MediaRelay for RelayLink {
    fn offer(&mut self, _now: Timestamp, sdp: &Passing<'_>) -> Option<Vec<u8>> {
        let source = sdp.source.map(|ip| ip.to_string()).unwrap_or_default();
        self.ask(entries(b"offer", sdp, &source))
    }

    fn answer(&mut self, sdp: &Passing<'_>) -> Option<Vec<u8>> {
        let source = sdp.source.map(|ip| ip.to_string()).unwrap_or_default();
        self.ask(entries(b"answer", sdp, &source))
    }

    fn echo(&mut self, _now: Timestamp, sdp: &Passing<'_>) -> Option<Vec<u8>> {
        let source = sdp.source.map(|ip| ip.to_string()).unwrap_or_default();
        let mut e = entries(b"offer", sdp, &source);
        e.push((b"flags", Value::List(vec![Value::Bytes(b"echo")])));
        self.ask(e)
    }

    fn delete(&mut self, call_id: &[u8]) {
        // Nothing in the reply changes what the SIP server does: it is not waited for (a late
        // one is skipped by its cookie), so a stalled relay never holds the SIP thread here.
        let _ = self.send(vec![
            (b"command", Value::Bytes(b"delete")),
            (b"call-id", Value::Bytes(call_id)),
        ]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What the control thread does with the line, in miniature: the request must parse as ng
    /// with every key the relay reads.
    #[test]
    fn requests_are_ng_the_relay_reads_and_late_replies_are_skipped() {
        let (mut link, media) = pair().unwrap();
        let server = std::thread::spawn(move || {
            media.set_nonblocking(false).unwrap();
            let mut buf = vec![0; 4096];
            let n = media.recv(&mut buf).unwrap();
            let req = farside_media::ng::Request::parse(&buf[..n]).unwrap();
            assert_eq!(req.command, farside_media::ng::Command::Offer);
            assert_eq!(req.call_id, Some(b"c1".as_slice()));
            assert_eq!(req.from_tag, Some(b"t1".as_slice()));
            assert_eq!(req.received_from, Some("203.0.113.7".parse().unwrap()));
            assert_eq!(req.ice, Some(farside_media::ng::Ice::Remove));
            // A stale reply first, then the real one.
            media
                .send(&farside_media::ng::reply(
                    b"f0",
                    vec![(b"result", Value::Bytes(b"ok"))],
                ))
                .unwrap();
            media
                .send(&farside_media::ng::reply(
                    req.cookie,
                    vec![
                        (b"result", Value::Bytes(b"ok")),
                        (b"sdp", Value::Bytes(b"v=0\r\n")),
                    ],
                ))
                .unwrap();
            media
        });
        let sdp = link.offer(
            Timestamp::EPOCH,
            &Passing {
                call_id: b"c1",
                from_tag: b"t1",
                to_tag: None,
                sdp: b"v=0\r\nc=IN IP4 10.0.0.1\r\n",
                source: Some("203.0.113.7".parse().unwrap()),
            },
        );
        let media = server.join().unwrap();
        assert_eq!(sdp, Some(b"v=0\r\n".to_vec()));
        // Nobody answers now: the SDP passes as it came, after the wait.
        let started = Instant::now();
        assert_eq!(
            link.answer(&Passing {
                call_id: b"c1",
                from_tag: b"t1",
                to_tag: Some(b"t2"),
                sdp: b"v=0\r\n",
                source: None,
            }),
            None
        );
        assert!(started.elapsed() >= WAIT);
        drop(media);
    }
}
