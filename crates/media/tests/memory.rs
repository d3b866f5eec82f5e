//! What a call costs the relay core: 10,000 idle calls (offer and answer, one audio stream,
//! no media), measured as the growth of the process's resident memory. Sockets and their
//! kernel buffers are the shell's and come on top (four UDP sockets per call).

#![allow(clippy::unwrap_used)]

use farside_media::relay::{MediaPorts, Passing, Relay, RelayConfig};
use farside_sdp::Ice;
use farside_time::Timestamp;

struct Ports(u32);

impl MediaPorts for Ports {
    fn take_pair(&mut self, _ipv6: bool) -> Option<u16> {
        self.0 += 2;
        Some((self.0 % 60_000) as u16 + 1024)
    }
    fn give_back(&mut self, _: u16) {}
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn ten_thousand_idle_calls_cost_the_core_a_few_kilobytes_each() {
    const CALLS: u32 = 10_000;
    let mut relay = Relay::new(RelayConfig {
        max_calls: CALLS as usize,
        ..RelayConfig::new("203.0.113.5".parse().unwrap())
    });
    let mut ports = Ports(0);
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let sdp = |ip: &str| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        )
    };
    let (offer, answer) = (sdp("192.168.1.20"), sdp("192.0.2.20"));
    let before = rss();
    for i in 0..CALLS {
        let id = format!("{i:08x}-call@pbx.example.org");
        relay
            .offer(
                now,
                &Passing {
                    call_id: id.as_bytes(),
                    from_tag: b"from-tag-1",
                    to_tag: None,
                    sdp: offer.as_bytes(),
                    source: Some("198.51.100.7".parse().unwrap()),
                    ice: Ice::Remove,
                    handover: false,
                    recipient_ipv6: None,
                },
                &mut ports,
            )
            .unwrap();
        relay
            .answer(
                now,
                &Passing {
                    call_id: id.as_bytes(),
                    from_tag: b"from-tag-1",
                    to_tag: None,
                    sdp: answer.as_bytes(),
                    source: Some("192.0.2.20".parse().unwrap()),
                    ice: Ice::Remove,
                    handover: false,
                    recipient_ipv6: None,
                },
            )
            .unwrap();
    }
    let per_call = rss().saturating_sub(before) / u64::from(CALLS);
    assert_eq!(relay.calls(), CALLS as usize);
    eprintln!(
        "NOTE {CALLS} idle calls: {per_call} bytes of resident memory each in the relay core"
    );
    assert!(per_call < 8 * 1024, "{per_call} bytes per call");
}
