//! A SIP phone as small as the scenarios need (RFC 3261 UA over UDP): it registers with Digest
//! (MD5, `qop=auth`), answers keep-alive OPTIONS, rings and answers (or refuses) INVITEs, and
//! calls: INVITE, ACK for the 2xx along the Record-Route, BYE. It sends no keep-alives of its
//! own, like many phones behind NAT.

use std::net::SocketAddr;

use farside_sip::{HeaderName, Message, StartLine, response};
use md5::{Digest as _, Md5};

/// What the phone does with an INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 180, then 200 once `after` the INVITE (seconds, in whole steps of the world).
    Accept { after_ms: u64 },
    /// 486 Busy Here at once.
    Busy,
}

#[derive(Debug)]
pub struct Phone {
    pub user: String,
    password: String,
    pub domain: String,
    /// Its own address (private, behind its NAT, or public).
    pub addr: SocketAddr,
    /// Where it sends requests (its outbound proxy: Farside).
    pub proxy: SocketAddr,
    pub answer: Answer,
    cseq: u32,
    call_id: String,
    pub tag: String,
    branch: u32,
    /// The nonces of the challenges it got, in order.
    pub nonces: Vec<String>,
    pub registered: bool,
    /// Status codes of every response it got to its REGISTERs, in order.
    pub register_answers: Vec<u16>,
    /// INVITEs it received (Call-IDs), OPTIONS it answered, CANCELs it got.
    pub invites: Vec<String>,
    pub options: u32,
    pub cancels: u32,
    pub byes: u32,
    /// Final responses to the INVITE it sent.
    pub call_answers: Vec<u16>,
    /// The SDP of every INVITE or ACK it got and of every 2xx to its own INVITEs, in order.
    pub sdp_seen: Vec<String>,
    /// It calls with a late offer (RFC 3261 §13.2.1): an INVITE without SDP, the answer in
    /// the ACK.
    pub late_offer: bool,
    /// Calls it finished with BYE and got 200 for.
    pub hung_up: u32,
    /// A 200 for one of its INVITEs to answer, ringing until this time (ms of the world).
    pending_answer: Option<(u64, Vec<u8>)>,
    /// The dialog of its call: (route set, remote target, To with tag).
    dialog: Option<(Vec<String>, String, String)>,
    /// Stale replays: it answers a 401 with the first nonce it ever got, after asking twice
    /// (seed 001's phone behind an ALG).
    pub answer_with_first_nonce_after: Option<usize>,
}

pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Phone {
    pub fn new(
        user: &str,
        password: &str,
        domain: &str,
        addr: SocketAddr,
        proxy: SocketAddr,
    ) -> Self {
        Phone {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            addr,
            proxy,
            answer: Answer::Accept { after_ms: 0 },
            cseq: 0,
            call_id: format!("reg-{user}-{}@{}", addr.port(), addr.ip()),
            tag: format!("t{user}{}", addr.port()),
            branch: 0,
            nonces: Vec::new(),
            registered: false,
            register_answers: Vec::new(),
            invites: Vec::new(),
            options: 0,
            cancels: 0,
            byes: 0,
            call_answers: Vec::new(),
            sdp_seen: Vec::new(),
            late_offer: false,
            hung_up: 0,
            pending_answer: None,
            dialog: None,
            answer_with_first_nonce_after: None,
        }
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!(
            "Via: SIP/2.0/UDP {};branch=z9hG4bK{}{};rport\r\n",
            self.addr, self.user, self.branch
        )
    }

    /// A REGISTER (with credentials for `nonce`).
    pub fn register(&mut self, nonce: Option<&str>) -> Vec<u8> {
        self.cseq += 1;
        let uri = format!("sip:{}", self.domain);
        let mut m = format!(
            "REGISTER {uri} SIP/2.0\r\n{}Max-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={t}\r\n\
To: <sip:{u}@{d}>\r\nCall-ID: {c}\r\nCSeq: {n} REGISTER\r\nContact: <sip:{u}@{a}>\r\n\
Expires: 3600\r\n",
            self.via(),
            u = self.user,
            d = self.domain,
            t = self.tag,
            c = self.call_id,
            n = self.cseq,
            a = self.addr,
        );
        if let Some(nonce) = nonce {
            let ha1 = md5_hex(&format!("{}:{}:{}", self.user, self.domain, self.password));
            let ha2 = md5_hex(&format!("REGISTER:{uri}"));
            // Each phone its own cnonce (RFC 7616 §3.4), counting its uses of a nonce up.
            let cnonce = format!("c-{}", self.tag);
            let nc = format!("{:08x}", self.cseq);
            let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            m.push_str(&format!(
                "Authorization: Digest username=\"{}\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\r\n",
                self.user, self.domain
            ));
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        m.into_bytes()
    }

    /// An INVITE to `callee` (`sip:user@domain`).
    /// Its SDP: audio on port 4000 of its own address.
    pub fn sdp(&self) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            ip = self.addr.ip()
        )
    }

    pub fn invite(&mut self, callee: &str, call_id: &str) -> Vec<u8> {
        let sdp = if self.late_offer {
            String::new()
        } else {
            self.sdp()
        };
        format!(
            "INVITE {callee} SIP/2.0\r\n{}Max-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={t}\r\nTo: <{callee}>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{u}@{a}>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
            self.via(),
            sdp.len(),
            u = self.user,
            d = self.domain,
            t = self.tag,
            a = self.addr,
        )
        .into_bytes()
    }

    /// A request inside the call it made (ACK for the 2xx, BYE), along its route set.
    fn in_dialog(&mut self, method: &str, cseq: u32, call_id: &str) -> Option<Vec<u8>> {
        let (routes, target, to) = self.dialog.clone()?;
        let mut m = format!(
            "{method} {target} SIP/2.0\r\n{}Max-Forwards: 70\r\n",
            self.via()
        );
        for r in &routes {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        m.push_str(&format!(
            "From: <sip:{}@{}>;tag={}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
            self.user, self.domain, self.tag
        ));
        Some(m.into_bytes())
    }

    /// Hangs up the call it made.
    pub fn bye(&mut self, call_id: &str) -> Option<Vec<u8>> {
        self.in_dialog("BYE", 2, call_id)
    }

    /// What it sends at `now_ms` without being asked: a ringing call's 200 when its time came.
    pub fn poll(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        match &self.pending_answer {
            Some((at, _)) if *at <= now_ms => self.pending_answer.take().map(|(_, b)| b),
            _ => None,
        }
    }

    /// When it wants [`Phone::poll`] next.
    pub fn next_wake_ms(&self) -> Option<u64> {
        self.pending_answer.as_ref().map(|(at, _)| *at)
    }

    /// Handles a datagram at `now_ms`; returns what it sends back.
    pub fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        let Ok(m) = Message::parse(bytes) else {
            return Vec::new();
        };
        match m.start_line() {
            StartLine::Request { method, .. } => self.request(now_ms, &m, method.0),
            StartLine::Response { code, .. } => self.response(&m, code),
        }
    }

    fn request(&mut self, now_ms: u64, m: &Message<'_>, method: &[u8]) -> Vec<Vec<u8>> {
        let tag = format!("a{}{}", self.user, self.addr.port());
        match method {
            b"OPTIONS" => {
                self.options += 1;
                vec![response(m, 200, "OK", &tag, &[])]
            }
            b"INVITE" => {
                self.invites
                    .push(String::from_utf8_lossy(m.call_id()).into_owned());
                self.sdp_seen
                    .push(String::from_utf8_lossy(m.body()).into_owned());
                let contact = format!("<sip:{}@{}>", self.user, self.addr);
                match self.answer {
                    Answer::Busy => vec![response(m, 486, "Busy Here", &tag, &[])],
                    Answer::Accept { after_ms } => {
                        let rr: Vec<(&str, String)> = m
                            .fields(HeaderName::RecordRoute)
                            .map(|h| {
                                (
                                    "Record-Route",
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect();
                        let mut extra: Vec<(&str, &str)> =
                            rr.iter().map(|(n, v)| (*n, v.as_str())).collect();
                        extra.push(("Contact", &contact));
                        let ok = with_sdp(response(m, 200, "OK", &tag, &extra), &self.sdp());
                        let ringing = response(m, 180, "Ringing", &tag, &[]);
                        if after_ms == 0 {
                            vec![ringing, ok]
                        } else {
                            self.pending_answer = Some((now_ms + after_ms, ok));
                            vec![ringing]
                        }
                    }
                }
            }
            b"CANCEL" => {
                self.cancels += 1;
                self.pending_answer = None;
                vec![response(m, 200, "OK", &tag, &[])]
            }
            b"BYE" => {
                self.byes += 1;
                vec![response(m, 200, "OK", &tag, &[])]
            }
            _ => {
                // ACK: after a late offer it carries the answer.
                if !m.body().is_empty() {
                    self.sdp_seen
                        .push(String::from_utf8_lossy(m.body()).into_owned());
                }
                Vec::new()
            }
        }
    }

    fn response(&mut self, m: &Message<'_>, code: u16) -> Vec<Vec<u8>> {
        let method = m.cseq().method;
        if method.0 == b"REGISTER" {
            self.register_answers.push(code);
            match code {
                401 => {
                    let v = String::from_utf8_lossy(
                        m.value(HeaderName::WwwAuthenticate).unwrap_or(b""),
                    )
                    .into_owned();
                    let nonce = v
                        .split("nonce=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_owned();
                    self.nonces.push(nonce.clone());
                    let n = self.nonces.len();
                    return match self.answer_with_first_nonce_after {
                        // Asks again without credentials, then answers with the first nonce.
                        Some(k) if n < k => vec![self.register(None)],
                        Some(_) => {
                            let first = self.nonces[0].clone();
                            vec![self.register(Some(&first))]
                        }
                        None => vec![self.register(Some(&nonce))],
                    };
                }
                200 => self.registered = true,
                _ => {}
            }
            return Vec::new();
        }
        if method.0 == b"INVITE" && code >= 200 {
            self.call_answers.push(code);
            if (200..300).contains(&code) {
                self.sdp_seen
                    .push(String::from_utf8_lossy(m.body()).into_owned());
                // The route set is the Record-Route reversed (RFC 3261 §12.1.2); the target
                // the callee's Contact.
                let mut routes: Vec<String> = m
                    .items(HeaderName::RecordRoute)
                    .map(|r| String::from_utf8_lossy(r).into_owned())
                    .collect();
                routes.reverse();
                let target = m
                    .contacts()
                    .next()
                    .map(|c| String::from_utf8_lossy(c.uri().as_bytes()).into_owned())
                    .unwrap_or_default();
                let to =
                    String::from_utf8_lossy(m.value(HeaderName::To).unwrap_or(b"")).into_owned();
                self.dialog = Some((routes, target, to));
                let call_id = String::from_utf8_lossy(m.call_id()).into_owned();
                let ack = self.in_dialog("ACK", 1, &call_id);
                let sdp = self.sdp();
                return ack
                    .map(|a| {
                        if self.late_offer {
                            with_sdp(a, &sdp)
                        } else {
                            a
                        }
                    })
                    .into_iter()
                    .collect();
            }
            return Vec::new();
        }
        if method.0 == b"BYE" && code == 200 {
            self.hung_up += 1;
        }
        Vec::new()
    }
}

/// A message written with `Content-Length: 0`, given `sdp` as its body.
fn with_sdp(message: Vec<u8>, sdp: &str) -> Vec<u8> {
    let text = String::from_utf8(message).expect("ASCII message");
    text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
    .into_bytes()
}
