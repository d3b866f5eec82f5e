//! The doctor's SIP checks, as a phone on this network would send: an OPTIONS and an INVITE
//! with SDP to the server's mirror service (`farside_sip::mirror`) over UDP, TCP and TLS, each
//! compared with what arrived; and a registration with the user's credentials (Digest, RFC
//! 3261 §22), removed again afterwards. Blocking sockets, one check at a time.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use farside_bench::sip_wire;
use farside_sip::{Message, StartLine};

use super::report::{Change, Registration, SipPath};

/// How long a check waits for an answer (UDP retransmits from 500 ms, doubling: RFC 3261
/// §17.1.2.2's Timer E, cut short).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);

/// A transport and the server's address on it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// Where.
    pub server: SocketAddr,
    /// How it was found.
    pub source: String,
}

/// One conversation with the server: a UDP socket or a connection.
pub(super) enum Conn {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
    Tls(
        Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
        Vec<u8>,
    ),
}

impl Conn {
    pub(super) fn open(
        t: &Target,
        local: IpAddr,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<(Conn, SocketAddr)> {
        match t.transport {
            "udp" => {
                let s = UdpSocket::bind(SocketAddr::new(local, 0))?;
                let me = s.local_addr()?;
                Ok((Conn::Udp(s, t.server), me))
            }
            transport => {
                let s = TcpStream::connect_timeout(&t.server, ANSWER_TIMEOUT)?;
                s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
                let me = s.local_addr()?;
                if transport == "tcp" {
                    return Ok((Conn::Tcp(s, Vec::new()), me));
                }
                let tls = tls.ok_or_else(|| anyhow::anyhow!("no TLS client configured"))?;
                let name = rustls::pki_types::ServerName::IpAddress(t.server.ip().into());
                let c = rustls::ClientConnection::new(Arc::clone(tls), name)?;
                Ok((
                    Conn::Tls(Box::new(rustls::StreamOwned::new(c, s)), Vec::new()),
                    me,
                ))
            }
        }
    }

    /// Sends `request` and waits for a final response of its transaction (`branch`); the
    /// response and the time to its first byte.
    pub(super) fn ask(
        &mut self,
        request: &[u8],
        branch: &str,
    ) -> anyhow::Result<(Vec<u8>, Duration)> {
        let start = Instant::now();
        match self {
            Conn::Udp(s, to) => {
                let mut wait = Duration::from_millis(500);
                let mut buf = vec![0u8; 65_535];
                s.send_to(request, *to)?;
                let mut resend = start + wait;
                while start.elapsed() < ANSWER_TIMEOUT {
                    s.set_read_timeout(Some(
                        resend
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(1)),
                    ))?;
                    match s.recv_from(&mut buf) {
                        Ok((n, _)) => {
                            let r = &buf[..n];
                            if is_final_of(r, branch) {
                                return Ok((r.to_vec(), start.elapsed()));
                            }
                        }
                        Err(_) => {
                            s.send_to(request, *to)?;
                            wait = (wait * 2).min(Duration::from_secs(4));
                            resend = Instant::now() + wait;
                        }
                    }
                }
                anyhow::bail!("no answer within {} s", ANSWER_TIMEOUT.as_secs())
            }
            Conn::Tcp(s, buf) => ask_stream(s, buf, request, branch, start),
            Conn::Tls(s, buf) => ask_stream(s.as_mut(), buf, request, branch, start),
        }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Udp(s, to) => {
                s.send_to(bytes, *to)?;
            }
            Conn::Tcp(s, _) => s.write_all(bytes)?,
            Conn::Tls(s, _) => s.write_all(bytes)?,
        }
        Ok(())
    }
}

fn ask_stream(
    s: &mut (impl Read + Write),
    buf: &mut Vec<u8>,
    request: &[u8],
    branch: &str,
    start: Instant,
) -> anyhow::Result<(Vec<u8>, Duration)> {
    s.write_all(request)?;
    s.flush()?;
    let mut chunk = [0u8; 16 * 1024];
    while start.elapsed() < ANSWER_TIMEOUT {
        loop {
            match farside_sip::frame(buf) {
                farside_sip::Frame::Message(n) => {
                    let m: Vec<u8> = buf.drain(..n).collect();
                    if is_final_of(&m, branch) {
                        return Ok((m, start.elapsed()));
                    }
                }
                farside_sip::Frame::Ping(n) | farside_sip::Frame::Pong(n) => {
                    buf.drain(..n);
                }
                farside_sip::Frame::Incomplete => break,
                farside_sip::Frame::Invalid => anyhow::bail!("the server sent something not SIP"),
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            anyhow::bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    anyhow::bail!("no answer within {} s", ANSWER_TIMEOUT.as_secs())
}

/// Whether `bytes` is a final response (≥ 200) whose top Via has `branch`.
fn is_final_of(bytes: &[u8], branch: &str) -> bool {
    let Ok(m) = Message::parse(bytes) else {
        return false;
    };
    matches!(m.start_line(), StartLine::Response { code, .. } if code >= 200)
        && m.via().branch() == Some(branch.as_bytes())
}

pub(super) fn status(bytes: &[u8]) -> Option<u16> {
    match Message::parse(bytes).ok()?.start_line() {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request { .. } => None,
    }
}

pub(super) fn random_token() -> String {
    let mut b = [0u8; 8];
    let _ = farside_io::random_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request to write.
pub(super) struct Request<'a> {
    pub(super) method: &'a str,
    pub(super) uri: &'a str,
    pub(super) transport: &'a str,
    /// This end of the conversation.
    pub(super) me: SocketAddr,
    /// The From URI and its tag.
    pub(super) from: &'a str,
    pub(super) tag: &'a str,
    /// The To header's value (`<uri>`, with the answer's tag for an ACK).
    pub(super) to: &'a str,
    /// The Call-ID's token (`@` and this host's address follow).
    pub(super) call_id: &'a str,
    pub(super) cseq: u32,
    pub(super) branch: &'a str,
    /// The user part of the Contact.
    pub(super) contact_user: &'a str,
    /// More header lines, each with its CRLF.
    pub(super) extra: &'a str,
    /// An SDP body.
    pub(super) body: Option<&'a str>,
}

/// The fresh identifiers of a new conversation's first request: its From tag, Call-ID and
/// branch.
pub(super) struct Ids {
    pub(super) tag: String,
    pub(super) call_id: String,
    pub(super) branch: String,
}

impl Ids {
    /// New random ones.
    pub(super) fn fresh() -> Ids {
        Ids {
            tag: random_token(),
            call_id: random_token(),
            branch: format!("z9hG4bK-doctor-{}", random_token()),
        }
    }
}

impl<'a> Request<'a> {
    /// The first request (CSeq 1) of a conversation from the doctor (`from`, Contact user
    /// `doctor`) to `uri` (To `<uri>` as `to`), over `transport` from `me`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn first(
        method: &'a str,
        uri: &'a str,
        to: &'a str,
        transport: &'a str,
        me: SocketAddr,
        from: &'a str,
        ids: &'a Ids,
        body: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            method,
            uri,
            transport,
            me,
            from,
            tag: &ids.tag,
            to,
            call_id: &ids.call_id,
            cseq: 1,
            branch: &ids.branch,
            contact_user: "doctor",
            extra: "",
            body,
        }
    }

    /// The request as a phone behind this host's NAT writes it: its own (private) address in
    /// the Via, the Contact, the Call-ID and, for an INVITE, the SDP; so that an ALG on the way
    /// has something to rewrite.
    pub(super) fn text(&self) -> String {
        let me = match self.me {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let (content_type, body) = match self.body {
            Some(b) => ("Content-Type: application/sdp\r\n", b),
            None => ("", ""),
        };
        format!(
            "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {me};branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <{from}>;tag={tag}\r\n\
To: {to}\r\n\
Call-ID: {call_id}@{ip}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:{contact_user}@{me}>\r\n\
User-Agent: farside-doctor\r\n\
{extra}{content_type}Content-Length: {length}\r\n\r\n{body}",
            method = self.method,
            uri = self.uri,
            transport = self.transport.to_uppercase(),
            branch = self.branch,
            from = self.from,
            tag = self.tag,
            to = self.to,
            call_id = self.call_id,
            cseq = self.cseq,
            ip = self.me.ip(),
            contact_user = self.contact_user,
            extra = self.extra,
            length = body.len(),
        )
    }
}

/// Sends an OPTIONS and an INVITE with SDP to the mirror user over `t`, and compares what
/// arrived with what was sent.
pub fn mirror_check(
    t: &Target,
    local: IpAddr,
    domain: &str,
    mirror_user: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> SipPath {
    let mut path = SipPath {
        transport: t.transport.into(),
        server: format!("{} ({})", t.server, t.source),
        ..SipPath::default()
    };
    if let Err(e) = mirror_into(&mut path, t, local, domain, mirror_user, tls) {
        path.error = Some(format!("{e:#}"));
    }
    path
}

fn mirror_into(
    path: &mut SipPath,
    t: &Target,
    local: IpAddr,
    domain: &str,
    mirror_user: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<()> {
    let (mut conn, me) = Conn::open(t, local, Some(tls))?;
    let uri = format!("sip:{mirror_user}@{domain}");
    let from = format!("sip:doctor@{domain}");
    let sdp = format!(
        "v=0\r\no=doctor 1 1 IN IP4 {ip}\r\ns=farside doctor\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=rtcp:{rtcp} IN IP4 {ip}\r\na=sendrecv\r\n",
        ip = me.ip(),
        port = me.port().wrapping_add(2),
        rtcp = me.port().wrapping_add(3),
    );
    let mut changes: Vec<Change> = Vec::new();
    let to = format!("<{uri}>");
    for (method, body) in [("OPTIONS", None), ("INVITE", Some(sdp.as_str()))] {
        let ids = Ids::fresh();
        let mut request = Request::first(method, &uri, &to, t.transport, me, &from, &ids, body);
        let sent = request.text();
        let (answer, rtt) = conn.ask(sent.as_bytes(), &ids.branch)?;
        path.reachable = true;
        path.rtt_ms.get_or_insert(rtt.as_secs_f64() * 1000.0);
        let m = Message::parse(&answer)
            .map_err(|e| anyhow::anyhow!("the server's answer is not SIP: {e:?}"))?;
        if path.seen_from.is_none() {
            let via = m.via();
            if let (Some(ip), Some(Some(port))) = (via.received(), via.rport()) {
                path.seen_from = Some(format!(
                    "{}:{}",
                    String::from_utf8_lossy(ip),
                    String::from_utf8_lossy(port)
                ));
            }
        }
        let arrived = farside_sip::mirror::arrived(&m).ok_or_else(|| {
            anyhow::anyhow!(
                "the server answered {} without a mirrored copy (no mirror service: is it Farside with sip.mirror_user = {mirror_user:?}?)",
                status(&answer).unwrap_or(0)
            )
        })?;
        for c in farside_sip::mirror::diff(sent.as_bytes(), &arrived) {
            let c = Change {
                field: c.field,
                sent: c.sent,
                arrived: c.arrived,
            };
            if !changes.contains(&c) {
                changes.push(c);
            }
        }
        if method == "INVITE" {
            // RFC 3261 §17.1.1.3: the ACK of a non-2xx answer, hop by hop: the INVITE's branch,
            // Call-ID and From, the answer's To.
            let answered_to = m
                .value(farside_sip::HeaderName::To)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            request.method = "ACK";
            request.to = &answered_to;
            request.body = None;
            let _ = conn.send(request.text().as_bytes());
        }
    }
    path.alg = !changes.is_empty();
    path.changes = changes;
    Ok(())
}

/// Registers `user` at `domain` through `server` over UDP with Digest, as a phone does, then
/// removes the binding again (Expires: 0).
pub fn register(
    server: SocketAddr,
    local: IpAddr,
    domain: &str,
    user: &str,
    password: &str,
) -> Registration {
    let aor = format!("sip:{user}@{domain}");
    let mut reg = Registration {
        aor: aor.clone(),
        ..Registration::default()
    };
    let t = Target {
        transport: "udp",
        server,
        source: String::new(),
    };
    let (mut conn, me) = match Conn::open(&t, local, None) {
        Ok(c) => c,
        Err(e) => {
            reg.error = Some(format!("{e:#}"));
            return reg;
        }
    };
    let mut login = Login {
        conn: &mut conn,
        me,
        domain,
        user,
        password,
    };
    match login.register(&mut reg, 300) {
        Ok(()) => {
            // Leave nothing behind: the doctor's Contact would take calls for the user. The
            // same socket, so the same Contact.
            let _ = login.register(&mut Registration::default(), 0);
        }
        Err(e) => reg.error = Some(format!("{e:#}")),
    }
    reg
}

/// One phone's registration: its socket and its credentials.
struct Login<'a> {
    conn: &'a mut Conn,
    me: SocketAddr,
    domain: &'a str,
    user: &'a str,
    password: &'a str,
}

impl Login<'_> {
    /// REGISTERs with `expires`, through the challenges, and records what came of it.
    fn register(&mut self, reg: &mut Registration, expires: u32) -> anyhow::Result<()> {
        let (domain, user, password, me) = (self.domain, self.user, self.password, self.me);
        let uri = format!("sip:{domain}");
        let aor = format!("sip:{user}@{domain}");
        let to = format!("<{aor}>");
        // One Call-ID and From tag for the REGISTERs of this conversation (RFC 3261 §10.2).
        let (tag, call_id) = (random_token(), random_token());
        let mut auth = String::new();
        let mut stale = 0;
        let mut cseq = 1;
        loop {
            let branch = format!("z9hG4bK-doctor-{}", random_token());
            let extra = format!("{auth}Expires: {expires}\r\n");
            let sent = Request {
                method: "REGISTER",
                uri: &uri,
                transport: "udp",
                me,
                from: &aor,
                tag: &tag,
                to: &to,
                call_id: &call_id,
                cseq,
                branch: &branch,
                contact_user: user,
                extra: &extra,
                body: None,
            }
            .text();
            let (answer, _) = self.conn.ask(sent.as_bytes(), &branch)?;
            let code = status(&answer).unwrap_or(0);
            reg.status = Some(code);
            match code {
                200..=299 => {
                    reg.registered = true;
                    reg.expires_s = granted_expiry(&answer, user, expires);
                    return Ok(());
                }
                401 | 407 if reg.challenges < 3 => {
                    let c = sip_wire::parse_challenge(&answer)
                        .ok_or_else(|| anyhow::anyhow!("{code} without a Digest MD5 challenge"))?;
                    if reg.challenges > 0 {
                        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
                        if text.contains("stale=true") {
                            stale += 1;
                        } else {
                            anyhow::bail!("{code} again: the password was refused");
                        }
                    }
                    reg.challenges += 1;
                    let cnonce = random_token();
                    let ha1 = sip_wire::ha1(user, c.realm, password);
                    let ha2 = sip_wire::ha2_register(domain);
                    let response = sip_wire::response(&ha1, &c, &cnonce, &ha2);
                    let realm = String::from_utf8_lossy(c.realm);
                    let nonce = String::from_utf8_lossy(c.nonce);
                    let response = String::from_utf8_lossy(&response);
                    let qop = if c.qop_auth {
                        format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\"")
                    } else {
                        String::new()
                    };
                    let opaque = c
                        .opaque
                        .map(|o| format!(", opaque=\"{}\"", String::from_utf8_lossy(o)))
                        .unwrap_or_default();
                    let header = if code == 401 {
                        "Authorization"
                    } else {
                        "Proxy-Authorization"
                    };
                    auth = format!(
                        "{header}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5{qop}{opaque}\r\n"
                    );
                    cseq += 1;
                }
                401 | 407 => {
                    reg.stale_loop = stale >= 2;
                    anyhow::bail!("challenged {} times in a row", reg.challenges + 1)
                }
                code => anyhow::bail!(
                    "{code} {}",
                    String::from_utf8_lossy(&answer)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .splitn(3, ' ')
                        .nth(2)
                        .unwrap_or("")
                ),
            }
        }
    }
}

/// The expiry the 200 grants the doctor's Contact: its `expires` parameter, or the Expires
/// header, or what was asked.
fn granted_expiry(answer: &[u8], user: &str, asked: u32) -> Option<u64> {
    let m = Message::parse(answer).ok()?;
    let mine = format!("sip:{user}@");
    for c in m.contacts() {
        if c.uri().as_bytes().starts_with(mine.as_bytes())
            && let Some(Some(v)) = c.params().get("expires")
        {
            return std::str::from_utf8(v).ok()?.trim().parse().ok();
        }
    }
    m.value(farside_sip::HeaderName::Expires)
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        .or(Some(u64::from(asked)))
}
