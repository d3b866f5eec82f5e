//! Feeds arbitrary bytes to the whole sans-IO SIP server, as a sequence of up to 16 datagrams
//! and stream messages (split at 0xFF bytes; each one's first byte picks the transport, the
//! source and how far the clock moves), with a user in the store and timers run between
//! them; every relayed call and echo call gets one SDP from a relay that takes all. Nothing may
//! panic, and whatever the server sends must be a SIP message that parses, a CRLF keep-alive
//! answer, or a STUN response.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run sip_server -- -max_total_time=30` from the repo root.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farside_sip::Message;
use farside_sip::digest::Algorithm;
use farside_sip::media::{MediaRelay, Passing};
use farside_sip::nat::Transport;
use farside_sip::registrar::{Flow, RegistrarConfig, Users};
use farside_sip::server::{Keys, Limits, Mode, SipServer, SipServerConfig};
use farside_time::Timestamp;
use libfuzzer_sys::fuzz_target;

struct OneUser;

impl Users for OneUser {
    fn ha1(&self, _: &str, user: &str, _: Algorithm) -> Option<Vec<u8>> {
        (user == "alice").then(|| vec![7; 16])
    }
}

fn server() -> SipServer {
    let me: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
    let mut s = SipServer::new(
        SipServerConfig {
            registrar: RegistrarConfig {
                domain: "example.org".into(),
                realm: "example.org".into(),
                ..RegistrarConfig::default()
            },
            mode: Mode::Registrar,
            keepalive: None,
            listeners: vec![(me, Transport::Udp), (me, Transport::Tcp)],
            limits: Limits::default(),
            software: None,
            relay: farside_sip::media::RelayPolicy::Nated,
            mirror_user: farside_sip::mirror::DEFAULT_USER.into(),
            echo_user: farside_sip::echo::DEFAULT_USER.into(),
        },
        Keys {
            nonces: [1; 32],
            flow_tokens: [2; 32],
        },
        3,
    );
    s.set_users(Arc::new(OneUser));
    s.set_media_relay(Box::new(AnyRelay));
    s
}

/// A relay that takes every offer, answer and echo with one SDP: the server's relaying and
/// echo paths run too (`nated` relays what looks NATed).
struct AnyRelay;

const RELAY_SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";

impl MediaRelay for AnyRelay {
    fn offer(&mut self, _: Timestamp, _: &Passing<'_>) -> Option<Vec<u8>> {
        Some(RELAY_SDP.to_vec())
    }
    fn answer(&mut self, _: &Passing<'_>) -> Option<Vec<u8>> {
        Some(RELAY_SDP.to_vec())
    }
    fn delete(&mut self, _: &[u8]) {}
    fn echo(&mut self, _: Timestamp, _: &Passing<'_>) -> Option<Vec<u8>> {
        Some(RELAY_SDP.to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = server();
    let me: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
    let mut now = Timestamp::from_unix_secs(1_800_000_000);
    for chunk in data.split(|&b| b == 0xFF).take(16) {
        let Some((&pick, bytes)) = chunk.split_first() else {
            continue;
        };
        let transport = [Transport::Udp, Transport::Tcp, Transport::Ws][usize::from(pick % 3)];
        let remote = SocketAddr::from(([198, 51, 100, pick & 0x07], 5060 + u16::from(pick >> 3)));
        let flow = Flow {
            transport,
            local: me,
            remote,
        };
        s.handle_input(now, flow, bytes);
        now = now + Duration::from_millis(u64::from(pick) * 250);
        if pick & 0x80 != 0 {
            s.handle_timeout(now);
        }
        while let Some(t) = s.poll_transmit() {
            let b = &t.bytes;
            let stun = b.len() >= 20 && b[0] < 4;
            if !(stun || b == b"\r\n") {
                Message::parse(b).expect("what the server sends parses");
            }
        }
        while s.poll_event().is_some() {}
    }
});
