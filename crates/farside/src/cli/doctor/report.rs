//! What `farside doctor` found: the report its checks fill in, printed as text or as one JSON
//! object (its schema is in docs/doctor.md, and the tests check it).

use serde::Serialize;

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// What the user asked about (`sip:user@domain` or a host).
    pub target: String,
    /// The NAT, as STUN behaviour discovery found it; `None` when skipped.
    pub nat: Option<Nat>,
    /// SIP over each transport tried.
    pub sip: Vec<SipPath>,
    /// Registration with the user's credentials; `None` without `--user`.
    pub registration: Option<Registration>,
    /// TURN allocations; `None` without credentials.
    pub turn: Vec<TurnPath>,
    /// Audio through the TURN relay; `None` when no allocation could carry it.
    pub audio: Option<Audio>,
    /// Audio through the RTP relay, in a call to the server's echo service over UDP; `None`
    /// when it could not be called ([`Report::rtp_relay_error`] says why).
    pub rtp_relay_audio: Option<Audio>,
    /// Why the echo call through the RTP relay failed (a server without the relay or the echo
    /// service answers 503 or 404).
    pub rtp_relay_error: Option<String>,
    /// Audio-like packets straight to the server and back (not relayed); `None` without a STUN
    /// server.
    pub direct_audio: Option<Audio>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The NAT.
#[derive(Debug, Default, Serialize)]
pub struct Nat {
    /// The STUN server asked, and how it was found.
    pub stun_server: String,
    /// Whether it answered.
    pub reachable: bool,
    /// This host's address.
    pub local: String,
    /// The public address STUN saw.
    pub public: Option<String>,
    /// Whether there is a NAT at all.
    pub nat: Option<bool>,
    /// RFC 4787 mapping: `endpoint-independent`, `address-dependent`,
    /// `address-and-port-dependent`.
    pub mapping: Option<String>,
    /// RFC 4787 filtering, in the same words.
    pub filtering: Option<String>,
    /// Whether the NAT hairpins.
    pub hairpinning: Option<bool>,
    /// The classic RFC 3489 name.
    pub classic: String,
    /// An idle UDP binding lived at least this long.
    pub lifetime_at_least_s: Option<u64>,
    /// It died within this long (none: it outlived the longest wait).
    pub lifetime_less_than_s: Option<u64>,
    /// Notes of the discovery.
    pub notes: Vec<String>,
}

/// SIP over one transport.
#[derive(Debug, Default, Serialize)]
pub struct SipPath {
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    /// The server's address, and how it was found.
    pub server: String,
    /// Whether the mirror answered.
    pub reachable: bool,
    /// Round-trip time of the first answer, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Where the server saw the request come from (its `received` and `rport`).
    pub seen_from: Option<String>,
    /// Whether the requests arrived changed (a SIP ALG, or another middlebox).
    pub alg: bool,
    /// Each changed line.
    pub changes: Vec<Change>,
    /// Why it could not be checked.
    pub error: Option<String>,
}

/// One changed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The header field's name or the SDP line's type.
    pub field: String,
    /// As sent (none: added on the way).
    pub sent: Option<String>,
    /// As it arrived (none: removed on the way).
    pub arrived: Option<String>,
}

/// The registration check.
#[derive(Debug, Default, Serialize)]
pub struct Registration {
    /// The address of record.
    pub aor: String,
    /// Whether a 200 came.
    pub registered: bool,
    /// Challenges (401, 407) answered before it.
    pub challenges: u32,
    /// The challenge came back with `stale=true` again and again (seed 001's loop).
    pub stale_loop: bool,
    /// The final status.
    pub status: Option<u16>,
    /// The expiry the server granted, in seconds.
    pub expires_s: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A TURN allocation over one transport.
#[derive(Debug, Default, Serialize)]
pub struct TurnPath {
    /// `udp` or `tcp`.
    pub transport: String,
    /// The server.
    pub server: String,
    /// Whether the allocation was granted.
    pub allocated: bool,
    /// Its relayed address.
    pub relayed: Option<String>,
    /// Why not.
    pub error: Option<String>,
}

/// An audio-like stream: RTP-sized packets every 20 ms and what came back (through the relay:
/// echoed by a peer on this host; direct: answered by the server's STUN).
#[derive(Debug, Default, Serialize)]
pub struct Audio {
    /// Which relay carried it.
    pub path: String,
    /// Packets sent.
    pub sent: u64,
    /// Packets that came back.
    pub received: u64,
    /// Lost, in percent.
    pub loss_percent: f64,
    /// Median round-trip time, in milliseconds.
    pub rtt_ms: f64,
    /// Interarrival jitter of the echoes (RFC 3550 §6.4.1), in milliseconds.
    pub jitter_ms: f64,
    /// The E-model's MOS for a G.711 call over it (ITU-T G.107).
    pub mos: f64,
}

/// The verdict: whether all is well, and what to do.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    /// No problem found.
    pub ok: bool,
    /// What is wrong, in plain words.
    pub problems: Vec<String>,
    /// What to do, in plain words.
    pub advice: Vec<String>,
    /// The exit status it gives (see `farside doctor --help`).
    pub exit_code: u8,
}

impl Report {
    /// The report as text, for a person.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "farside doctor: {}", self.target);
        if let Some(n) = &self.nat {
            let _ = writeln!(s, "\nNAT (STUN {})", n.stun_server);
            if !n.reachable {
                let _ = writeln!(s, "  no answer: STUN is blocked, or the server is down");
            } else {
                let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "not determined".into());
                let _ = writeln!(s, "  local address      {}", n.local);
                let _ = writeln!(s, "  public address     {}", or(&n.public));
                let _ = writeln!(s, "  mapping            {}", or(&n.mapping));
                let _ = writeln!(s, "  filtering          {}", or(&n.filtering));
                let hairpin = match n.hairpinning {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "not determined",
                };
                let _ = writeln!(s, "  hairpinning        {hairpin}");
                let _ = writeln!(s, "  classic NAT type   {}", n.classic);
                let lifetime = match (n.lifetime_at_least_s, n.lifetime_less_than_s) {
                    (_, Some(hi)) if hi > 0 => format!(
                        "an idle UDP binding dies within {hi} s (lived {} s)",
                        n.lifetime_at_least_s.unwrap_or(0)
                    ),
                    (Some(lo), _) => format!("an idle UDP binding lives at least {lo} s"),
                    _ => "not measured".into(),
                };
                let _ = writeln!(s, "  binding lifetime   {lifetime}");
            }
        }
        for p in &self.sip {
            let _ = writeln!(
                s,
                "\nSIP over {} ({})",
                p.transport.to_uppercase(),
                p.server
            );
            if !p.reachable {
                let why = p.error.as_deref().unwrap_or("no answer");
                let _ = writeln!(s, "  not reachable: {why}");
                continue;
            }
            if let Some(rtt) = p.rtt_ms {
                let _ = writeln!(s, "  reachable, {rtt:.1} ms round trip");
            }
            if let Some(from) = &p.seen_from {
                let _ = writeln!(s, "  the server saw it come from {from} (received/rport)");
            }
            if p.alg {
                let _ = writeln!(s, "  CHANGED ON THE WAY (a SIP ALG):");
                for c in &p.changes {
                    let _ = writeln!(
                        s,
                        "    {}: {} -> {}",
                        c.field,
                        c.sent.as_deref().unwrap_or("(none)"),
                        c.arrived.as_deref().unwrap_or("(removed)")
                    );
                }
            } else {
                let _ = writeln!(s, "  arrived unchanged: no SIP ALG on this path");
            }
        }
        if let Some(r) = &self.registration {
            let _ = writeln!(s, "\nRegistration of {}", r.aor);
            if r.registered {
                let _ = writeln!(
                    s,
                    "  registered after {} challenge(s); expiry {} s",
                    r.challenges,
                    r.expires_s.map_or("?".into(), |e| e.to_string())
                );
            } else {
                let why = r.error.as_deref().unwrap_or("refused");
                let _ = writeln!(s, "  NOT registered: {why}");
            }
        }
        for t in &self.turn {
            let _ = writeln!(
                s,
                "\nTURN over {} ({})",
                t.transport.to_uppercase(),
                t.server
            );
            match (&t.relayed, &t.error) {
                (Some(r), _) => {
                    let _ = writeln!(s, "  allocated, relayed address {r}");
                }
                (None, e) => {
                    let _ = writeln!(s, "  no allocation: {}", e.as_deref().unwrap_or("refused"));
                }
            }
        }
        if let Some(e) = &self.rtp_relay_error {
            let _ = writeln!(s, "\nAudio through the RTP relay: not measured: {e}");
        }
        for a in self
            .audio
            .iter()
            .chain(&self.rtp_relay_audio)
            .chain(&self.direct_audio)
        {
            let _ = writeln!(s, "\nAudio over the {}", a.path);
            let _ = writeln!(
                s,
                "  {} of {} packets came back ({:.1} % lost), {:.1} ms round trip, {:.1} ms jitter, MOS {:.2}",
                a.received, a.sent, a.loss_percent, a.rtt_ms, a.jitter_ms, a.mos
            );
        }
        let _ = writeln!(
            s,
            "\nVerdict: {}",
            if self.verdict.ok {
                "all well"
            } else {
                "problems found"
            }
        );
        for p in &self.verdict.problems {
            let _ = writeln!(s, "  problem: {p}");
        }
        for a in &self.verdict.advice {
            let _ = writeln!(s, "  advice:  {a}");
        }
        s
    }
}
