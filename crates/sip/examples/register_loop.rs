//! A benchmark of the SIP core alone: the real [`SipServer`] takes REGISTER, answers 401, takes
//! the REGISTER with Digest credentials and answers 200, for 200 users in turn, with no socket
//! and no shell. It prints the core's time per registration (both requests, their answers and
//! events), which `bench/sip.sh` cannot show apart from the kernel's and the wake-ups' share.
//!
//! `cargo run --release -p farside-sip --example register_loop [REGISTRATIONS]` (100,000 by
//! default). The messages are those of `farside bench sip`: a private Via and Contact, from
//! 127.0.0.1 (the NAT tests fire), a new Call-ID per registration.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use farside_sip::digest::Algorithm;
use farside_sip::nat::Transport;
use farside_sip::registrar::{Flow, RegistrarConfig, Users};
use farside_sip::server::{Keys, Limits, Mode, SipServer, SipServerConfig};
use farside_time::Timestamp;
use md5::{Digest as _, Md5};

const DOMAIN: &str = "example.org";
const USERS: usize = 200;

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Every user's password is "pw-<user>".
struct Passwords(HashMap<String, Vec<u8>>);

impl Users for Passwords {
    fn ha1(&self, _realm: &str, user: &str, algorithm: Algorithm) -> Option<Vec<u8>> {
        (algorithm == Algorithm::Md5)
            .then(|| self.0.get(user).cloned())
            .flatten()
    }
}

fn register(user: usize, seq: usize, cseq: u32, authorization: Option<&str>) -> Vec<u8> {
    let host = user % 250 + 2;
    let mut m = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.{host}:5060;branch=z9hG4bKrl-{seq}.{cseq};rport\r\n\
         From: <sip:user{user}@{DOMAIN}>;tag=rl-{seq}\r\nTo: <sip:user{user}@{DOMAIN}>\r\n\
         Call-ID: rl-{seq}@bench\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:user{user}@192.168.1.{host}:5060>\r\nMax-Forwards: 70\r\nExpires: 600\r\n"
    );
    if let Some(a) = authorization {
        m.push_str(a);
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

fn authorization(user: usize, nonce: &str) -> String {
    let uri = format!("sip:{DOMAIN}");
    let ha1 = md5_hex(&format!("user{user}:{DOMAIN}:pw-user{user}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"user{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, \
         cnonce=\"c0ffee\"\r\n"
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let me: SocketAddr = "127.0.0.1:5060".parse().expect("literal");
    let config = SipServerConfig {
        registrar: RegistrarConfig {
            domain: DOMAIN.into(),
            realm: DOMAIN.into(),
            algorithms: vec![Algorithm::Md5],
            ..RegistrarConfig::default()
        },
        mode: Mode::Registrar,
        keepalive: None,
        listeners: vec![(me, Transport::Udp)],
        // Every phone comes from 127.0.0.1, as in bench/sip.sh: no per-source budget of 401s.
        limits: Limits {
            refusals_per_second: 0,
            ..Limits::default()
        },
        software: None,
        relay: farside_sip::media::RelayPolicy::Nated,
        mirror_user: farside_sip::mirror::DEFAULT_USER.into(),
        echo_user: farside_sip::echo::DEFAULT_USER.into(),
    };
    let keys = Keys {
        nonces: [7; 32],
        flow_tokens: [8; 32],
    };
    let mut server = SipServer::new(config, keys, 1);
    let passwords = (0..USERS)
        .map(|u| {
            let hex = md5_hex(&format!("user{u}:{DOMAIN}:pw-user{u}"));
            let bytes = (0..16)
                .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            (format!("user{u}"), bytes)
        })
        .collect();
    server.set_users(Arc::new(Passwords(passwords)));

    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let mut in_core = Duration::ZERO;
    let mut registered = 0;
    let mut answers = Vec::new();
    let mut exchange = |server: &mut SipServer, now, flow, bytes: &[u8], in_core: &mut Duration| {
        let start = Instant::now();
        server.handle_input(now, flow, bytes);
        answers.clear();
        while let Some(t) = server.poll_transmit() {
            answers.push(t.bytes);
        }
        while server.poll_event().is_some() {}
        *in_core += start.elapsed();
        answers.first().cloned().unwrap_or_default()
    };
    for seq in 0..n {
        let user = seq % USERS;
        let flow = Flow {
            transport: Transport::Udp,
            local: me,
            remote: SocketAddr::new(me.ip(), 40_000 + user as u16),
        };
        // Two registrations per millisecond, as at 2,000/s.
        let now = t0 + Duration::from_millis(seq as u64 / 2);
        let challenge = exchange(
            &mut server,
            now,
            flow,
            &register(user, seq, 1, None),
            &mut in_core,
        );
        let text = String::from_utf8_lossy(&challenge);
        let Some(nonce) = text
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            eprintln!("no challenge for registration {seq}:\n{text}");
            std::process::exit(1);
        };
        let auth = authorization(user, nonce);
        let answer = exchange(
            &mut server,
            now,
            flow,
            &register(user, seq, 2, Some(&auth)),
            &mut in_core,
        );
        if answer.starts_with(b"SIP/2.0 200") {
            registered += 1;
        }
    }
    println!(
        "{registered} of {n} registered; {:.2} µs per registration in the SIP core",
        in_core.as_secs_f64() * 1e6 / n as f64
    );
    if registered != n {
        std::process::exit(1);
    }
}
