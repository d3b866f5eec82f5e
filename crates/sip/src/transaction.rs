//! Transactions of a stateful proxy (RFC 3261 §16, §17). INVITE: the proxy answers 100 Trying at
//! once, absorbs the caller's retransmissions (answering them with the last response instead),
//! forks to every binding, retransmits over UDP itself (Timer A, given up at Timer B as 408),
//! acknowledges non-2xx final responses hop by hop, forwards every 2xx and the best final
//! response when all branches have answered (§16.7 step 6), cancels the other branches once one
//! answers 2xx, and answers a CANCEL itself with 200 before cancelling its branches. Other
//! requests (BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY...): retransmissions absorbed, Farside's
//! own UDP retransmissions (Timer E, up to T2), the first final response forwarded, 408 at
//! Timer F. ACK (for a 2xx) is end to end and stays stateless. A request refused at once (404,
//! 480, 403...) keeps no state: its retransmission is refused again, as by a stateless proxy,
//! so that refused requests cannot fill the table calls need. Sans-IO: messages and the time in,
//! packets out.

use std::time::Duration;

use farside_time::Timestamp;

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::header::HeaderName;
use crate::message::{Message, Method, StartLine};
use crate::nat::Transport;
use crate::proxy::Action;
use crate::response::response;
pub use crate::transmit::Transmit;

/// Timer T1 (RFC 3261 §17.1.1.1).
const T1: Duration = Duration::from_millis(500);
/// Timer T2: the longest retransmission interval of a non-INVITE request.
const T2: Duration = Duration::from_secs(4);
/// Timer B: an unanswered branch gives up after 64·T1.
const TIMER_B: Duration = Duration::from_secs(32);
/// Timer C (§16.6 step 11): a branch that rang this long without a final answer is cancelled.
const TIMER_C: Duration = Duration::from_secs(180);
/// A finished transaction is kept this long to absorb late retransmissions (Timer J-like).
const LINGER: Duration = TIMER_B;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    /// Sent, nothing back yet.
    Calling,
    /// A provisional response came.
    Proceeding,
    /// A final response came.
    Completed,
}

#[derive(Debug)]
struct Branch {
    /// The INVITE as forwarded on this branch.
    invite: Transmit,
    /// Our Via's branch parameter on it.
    id: Vec<u8>,
    state: BranchState,
    /// Next retransmission (UDP, Calling only).
    resend_at: Timestamp,
    interval: Duration,
    /// When it gives up (Timer B, then Timer C once proceeding).
    deadline: Timestamp,
    /// The ACK sent for its non-2xx final answer (sent again for a retransmitted one).
    ack: Option<Transmit>,
    cancelled: bool,
}

#[derive(Debug)]
struct ServerTx {
    /// An INVITE transaction (else non-INVITE: no 100, no ACK, the first final wins).
    invite: bool,
    /// The caller's INVITE as received (top Via with received/rport).
    request: Vec<u8>,
    /// Where our own responses go.
    source: (Transport, SocketAddr, SocketAddr),
    /// What went back last (sent again for a retransmitted INVITE).
    last: Option<Transmit>,
    branches: Vec<Branch>,
    /// The best final non-2xx so far, ready to forward.
    best: Option<(u16, Transmit)>,
    /// Whether that is Farside's own 408 (Timer B), not a phone's answer.
    own_best: bool,
    /// A final response went back (2xx or the best).
    answered: bool,
    /// When it may be forgotten, once answered.
    done_at: Option<Timestamp>,
}

/// The proxy's INVITE transactions.
#[derive(Debug, Default)]
pub struct Transactions {
    servers: HashMap<Vec<u8>, ServerTx>,
    /// Our branch id → the caller's branch key.
    clients: HashMap<Vec<u8>, Vec<u8>>,
    max: usize,
    /// Status codes of the error responses this layer gave (its own, or the proxy's refusal
    /// of a new request), once each, for the counters.
    refusals: Vec<u16>,
}

/// The key of a server transaction: the top Via's branch and sent-by (§17.2.3); the method
/// too, but INVITE's (and so CANCEL's and ACK's) is the INVITE transaction's.
fn server_key(msg: &Message<'_>) -> Option<Vec<u8>> {
    let via = msg.via();
    let branch = via.branch()?;
    let mut k = branch.to_vec();
    k.push(b' ');
    k.extend_from_slice(via.host());
    k.extend_from_slice(&via.port().unwrap_or(5060).to_be_bytes());
    let method = msg.cseq().method;
    if ![Method::INVITE, Method::CANCEL, Method::ACK].contains(&method) {
        k.push(b' ');
        k.extend_from_slice(method.0);
    }
    Some(k)
}

impl Transactions {
    /// At most `max` transactions at once (new INVITEs beyond get 503).
    pub fn new(max: usize) -> Self {
        Transactions {
            max,
            ..Default::default()
        }
    }

    /// The status codes of the error responses given since the last call (each refusal
    /// once, not its retransmissions).
    pub fn take_refusals(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.refusals)
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// A request (not ACK or CANCEL) from `source` (transport, Farside's address, the
    /// sender's). A retransmission is answered with the last response (if any); a new INVITE
    /// gets 100 Trying; `forward` says where a new one goes (the proxy's forks, or its refusal).
    pub fn request(
        &mut self,
        msg: &Message<'_>,
        source: (Transport, SocketAddr, SocketAddr),
        now: Timestamp,
        forward: impl FnOnce() -> Vec<Action>,
    ) -> Vec<Transmit> {
        let (transport, local, remote) = source;
        let back = |bytes: Vec<u8>| Transmit {
            bytes,
            transport,
            from: local,
            to: remote,
        };
        let Some(key) = server_key(msg) else {
            self.refusals.push(400);
            return vec![back(response(msg, 400, "Missing Via Branch", "fst", &[]))];
        };
        if let Some(tx) = self.servers.get(&key) {
            return tx.last.iter().cloned().collect();
        }
        if self.servers.len() >= self.max {
            self.refusals.push(503);
            return vec![back(response(
                msg,
                503,
                "Service Unavailable",
                "fst",
                &[("Retry-After", "5")],
            ))];
        }
        let invite = msg.method() == Method::INVITE;
        let trying = back(response(msg, 100, "Trying", "fst", &[]));
        // A non-INVITE gets no 100 (§16.2: a stateful proxy should not send one).
        let mut out = if invite {
            vec![trying.clone()]
        } else {
            Vec::new()
        };
        let mut branches = Vec::new();
        let mut refusal = None;
        for action in forward() {
            match action {
                Action::Forward { .. } => {
                    let Some(p) = Transmit::of(action) else {
                        continue;
                    };
                    let Ok(m) = Message::parse(&p.bytes) else {
                        continue;
                    };
                    let Some(id) = m.via().branch().map(<[u8]>::to_vec) else {
                        continue;
                    };
                    out.push(p.clone());
                    self.clients.insert(id.clone(), key.clone());
                    branches.push(Branch {
                        invite: p,
                        id,
                        state: BranchState::Calling,
                        resend_at: now + T1,
                        interval: T1,
                        deadline: now + TIMER_B,
                        ack: None,
                        cancelled: false,
                    });
                }
                Action::Respond(r) => {
                    if let Some(code) = status_of(&r) {
                        self.refusals.push(code);
                    }
                    refusal = Some(back(r));
                }
                Action::Answer(r) => refusal = Some(back(r)),
                Action::Drop => {}
            }
        }
        // Refused (404, 480, 403...): the answer is final; no 100 needed before it, and no
        // state kept (a retransmission is refused again, the same way, as a stateless proxy
        // does): a flood of requests Farside refuses must not fill the table that calls need.
        if branches.is_empty() {
            return refusal.into_iter().collect();
        }
        let last = invite.then_some(trying);
        self.servers.insert(
            key,
            ServerTx {
                invite,
                request: msg.as_bytes().to_vec(),
                source,
                last,
                branches,
                best: None,
                own_best: false,
                answered: false,
                done_at: None,
            },
        );
        out
    }

    /// A response whose top Via is ours: `None` if it belongs to no INVITE transaction (the
    /// proxy then forwards it statelessly), else what to send. `upstream` is the response as
    /// the stateless proxy would forward it (our Via off).
    pub fn response(
        &mut self,
        msg: &Message<'_>,
        upstream: Action,
        now: Timestamp,
    ) -> Option<Vec<Transmit>> {
        let StartLine::Response { code, .. } = msg.start_line() else {
            return None;
        };
        let id = msg.via().branch()?;
        let key = self.clients.get(id)?.clone();
        let tx = self.servers.get_mut(&key)?;
        let i = tx.branches.iter().position(|b| b.id == id)?;
        let mut out = Vec::new();
        let up = Transmit::of(upstream);
        if !tx.invite {
            // Non-INVITE: a 100 stays here, other provisionals go up, the first final too.
            let b = &mut tx.branches[i];
            b.state = if code < 200 {
                BranchState::Proceeding
            } else {
                BranchState::Completed
            };
            if code > 100
                && !tx.answered
                && let Some(p) = up
            {
                tx.last = Some(p.clone());
                out.push(p);
                if code >= 200 {
                    tx.answered = true;
                    tx.done_at = Some(now + LINGER);
                }
            }
            return Some(out);
        }
        match code {
            100 => {
                let b = &mut tx.branches[i];
                if b.state == BranchState::Calling {
                    b.state = BranchState::Proceeding;
                    b.deadline = now + TIMER_C;
                }
            }
            101..=199 => {
                let b = &mut tx.branches[i];
                if b.state == BranchState::Calling {
                    b.state = BranchState::Proceeding;
                    b.deadline = now + TIMER_C;
                }
                if !tx.answered
                    && let Some(p) = up
                {
                    tx.last = Some(p.clone());
                    out.push(p);
                }
            }
            200..=299 => {
                // Every 2xx goes up (§16.7 step 5): the caller may get one from each fork.
                tx.branches[i].state = BranchState::Completed;
                if let Some(p) = up {
                    tx.last = Some(p.clone());
                    out.push(p);
                }
                if !tx.answered {
                    tx.answered = true;
                    tx.done_at = Some(now + LINGER);
                    out.extend(cancel_pending(tx));
                }
            }
            _ => {
                let b = &mut tx.branches[i];
                if b.state == BranchState::Completed {
                    // A retransmitted final answer: our ACK again.
                    out.extend(b.ack.clone());
                    return Some(out);
                }
                b.state = BranchState::Completed;
                let ack = ack_for(&b.invite, msg);
                b.ack = ack.clone();
                out.extend(ack);
                if let Some(p) = up {
                    let better = tx.best.as_ref().is_none_or(|(c, _)| rank(code) < rank(*c));
                    if better {
                        tx.best = Some((code, p));
                        tx.own_best = false;
                    }
                }
                out.extend(finish_if_done(tx, now));
            }
        }
        Some(out)
    }

    /// A CANCEL from the caller: `None` if it matches no INVITE transaction (forward it
    /// statelessly), else the 200 for it and the CANCELs for the pending branches.
    pub fn cancel(
        &mut self,
        msg: &Message<'_>,
        source: (Transport, SocketAddr, SocketAddr),
    ) -> Option<Vec<Transmit>> {
        let key = server_key(msg)?;
        let tx = self.servers.get_mut(&key)?;
        let (transport, local, remote) = source;
        let mut out = vec![Transmit {
            bytes: response(msg, 200, "OK", "fst", &[]),
            transport,
            from: local,
            to: remote,
        }];
        if !tx.answered {
            out.extend(cancel_pending(tx));
        }
        Some(out)
    }

    /// An ACK: true if it acknowledges a non-2xx final response this proxy sent (same branch
    /// as the INVITE: it ends here, §16.10); an ACK for a 2xx is end to end and not ours.
    pub fn ack(&mut self, msg: &Message<'_>) -> bool {
        server_key(msg)
            .and_then(|k| self.servers.get(&k))
            .is_some_and(|tx| {
                tx.invite
                    && tx.answered
                    && tx
                        .last
                        .as_ref()
                        .and_then(|p| Message::parse(&p.bytes).ok())
                        .is_some_and(|r| {
                            matches!(r.start_line(), StartLine::Response { code, .. } if code >= 300)
                        })
            })
    }

    /// Retransmissions and timeouts due at `now`; forgets finished transactions.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Transmit> {
        let mut out = Vec::new();
        for tx in self.servers.values_mut() {
            if tx.answered {
                continue;
            }
            let mut timed_out = Vec::new();
            for (i, b) in tx.branches.iter_mut().enumerate() {
                if b.state == BranchState::Completed {
                    continue;
                }
                if now >= b.deadline {
                    timed_out.push(i);
                    continue;
                }
                // Timer A (INVITE, until a provisional) or Timer E (non-INVITE, until the
                // final, capped at T2), over UDP only.
                let resend = if tx.invite {
                    b.state == BranchState::Calling
                } else {
                    b.state != BranchState::Completed
                };
                if resend && !b.invite.transport.is_stream() && now >= b.resend_at {
                    out.push(b.invite.clone());
                    b.interval = if tx.invite {
                        b.interval * 2
                    } else {
                        (b.interval * 2).min(T2)
                    };
                    b.resend_at = now + b.interval;
                }
            }
            for i in timed_out {
                // No final answer in time: 408 for this branch (and a CANCEL if it rang).
                let b = &mut tx.branches[i];
                let rang = tx.invite && b.state == BranchState::Proceeding;
                b.state = BranchState::Completed;
                if rang && let Some(c) = cancel_for(&b.invite) {
                    out.push(c);
                }
                // No 408 for a non-INVITE (RFC 4320 §4.2): its caller has given up by now.
                if tx.invite
                    && tx.best.is_none()
                    && let Ok(req) = Message::parse(&tx.request)
                {
                    let (transport, local, remote) = tx.source;
                    tx.own_best = true;
                    tx.best = Some((
                        408,
                        Transmit {
                            bytes: response(&req, 408, "Request Timeout", "fst", &[]),
                            transport,
                            from: local,
                            to: remote,
                        },
                    ));
                }
            }
            let own = tx.own_best;
            if let Some(p) = finish_if_done(tx, now) {
                if own {
                    self.refusals.push(408);
                }
                out.push(p);
            }
        }
        let clients = &mut self.clients;
        self.servers.retain(|_, tx| {
            let keep = tx.done_at.is_none_or(|t| now < t);
            if !keep {
                for b in &tx.branches {
                    clients.remove(&b.id);
                }
            }
            keep
        });
        out
    }
}

/// When every branch has a final answer and none was 2xx: the best one goes up.
fn finish_if_done(tx: &mut ServerTx, now: Timestamp) -> Option<Transmit> {
    if tx.answered
        || tx
            .branches
            .iter()
            .any(|b| b.state != BranchState::Completed)
    {
        return None;
    }
    tx.answered = true;
    tx.done_at = Some(now + LINGER);
    let (_, p) = tx.best.take()?;
    tx.last = Some(p.clone());
    Some(p)
}

/// CANCELs for the branches still without a final answer.
fn cancel_pending(tx: &mut ServerTx) -> Vec<Transmit> {
    let mut out = Vec::new();
    for b in &mut tx.branches {
        if b.state != BranchState::Completed && !b.cancelled {
            b.cancelled = true;
            out.extend(cancel_for(&b.invite));
        }
    }
    out
}

/// §16.7 step 6: 6xx first, then the lowest class, 4xx before 5xx; within, the first.
fn rank(code: u16) -> u16 {
    match code {
        600..=699 => 0,
        400..=499 => 1,
        500..=599 => 2,
        _ => 3,
    }
}

/// What a CANCEL or an ACK copies from the INVITE it follows (§9.1, §17.1.1.3): the
/// Request-URI, our Via, the Routes, From, To, Call-ID and the CSeq number.
struct Copied {
    uri: String,
    via: String,
    routes: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
}

fn copy_of(invite: &[u8]) -> Option<Copied> {
    let m = Message::parse(invite).ok()?;
    let StartLine::Request { uri, .. } = m.start_line() else {
        return None;
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(Copied {
        uri: text(uri.as_bytes()),
        via: text(m.via().as_bytes()),
        routes: m.fields(HeaderName::Route).map(|h| text(h.value)).collect(),
        from: text(m.value(HeaderName::From)?),
        to: text(m.value(HeaderName::To)?),
        call_id: text(m.call_id()),
        cseq: m.cseq().number,
    })
}

fn cancel_for(invite: &Transmit) -> Option<Transmit> {
    let c = copy_of(&invite.bytes)?;
    Some(request_like(invite, "CANCEL", &c, &c.to))
}

fn ack_for(invite: &Transmit, answer: &Message<'_>) -> Option<Transmit> {
    let c = copy_of(&invite.bytes)?;
    // The ACK's To is the response's (with its tag).
    let to = String::from_utf8_lossy(answer.value(HeaderName::To)?).into_owned();
    Some(request_like(invite, "ACK", &c, &to))
}

fn request_like(invite: &Transmit, method: &str, c: &Copied, to: &str) -> Transmit {
    let mut s = format!("{method} {} SIP/2.0\r\nVia: {}\r\n", c.uri, c.via);
    for r in &c.routes {
        s.push_str(&format!("Route: {r}\r\n"));
    }
    s.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nContent-Length: 0\r\n\r\n",
        c.from, c.call_id, c.cseq
    ));
    Transmit {
        bytes: s.into_bytes(),
        transport: invite.transport,
        from: invite.from,
        to: invite.to,
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    match Message::parse(response).ok()?.start_line() {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request { .. } => None,
    }
}
