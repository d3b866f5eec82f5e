//! The edge proxy (RFC 5626 §5, RFC 3327) in front of a registrar or PBX that does the
//! authentication and routing: phones' requests go to the `upstream`; a REGISTER gets a Path
//! and a dialog-creating request a Record-Route whose URI carries the phone's flow token, so
//! whatever the upstream sends for the phone comes back here and leaves over the flow the phone
//! opened (the only way through its NAT). Responses follow the Via back. Stateless.

use std::time::Duration;

use farside_time::Timestamp;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::edit::Edits;
use crate::flow_token::FlowTokens;
use crate::header::HeaderName;
use crate::message::{Message, Method, StartLine};
use crate::nat::Transport;
use crate::proxy::{ALLOW, Action, Proxy, address_of, remove_first_item};
use crate::registrar::Flow;
use crate::response::response;

/// How the edge fixes a NATed phone's Contact for an upstream that keeps no Path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContactFix {
    /// Leave it: the upstream routes by the Path (the default).
    #[default]
    None,
    /// Put the flow's public address and port in its host and port (nathelper's
    /// `fix_nated_contact`).
    Rewrite,
    /// Add `;alias=ip~port~transport` (nathelper's `add_contact_alias`); requests for it come
    /// back to the edge, which sends them there.
    Alias,
}

/// An edge proxy at `me` in front of `upstream`.
#[derive(Debug, Clone)]
pub struct Edge {
    me: SocketAddr,
    contact_fix: ContactFix,
    /// All of this server's listener addresses.
    local: Option<Arc<[SocketAddr]>>,
    upstream: SocketAddr,
    tokens: FlowTokens,
    branch_key: u64,
}

impl Edge {
    /// An edge at `me` (its UDP address, which the upstream reaches and Paths name)
    /// forwarding to `upstream`; `tokens` signs flow tokens, `branch_key` salts Via branches.
    pub fn new(me: SocketAddr, upstream: SocketAddr, tokens: FlowTokens, branch_key: u64) -> Self {
        Edge {
            me,
            contact_fix: ContactFix::None,
            local: None,
            upstream,
            tokens,
            branch_key,
        }
    }

    /// The server's other listeners (TCP, TLS), whose addresses are ours in Routes and Vias.
    pub fn with_addresses(mut self, all: Arc<[SocketAddr]>) -> Self {
        self.local = Some(all);
        self
    }

    /// The proxy logic for a message that arrived at `at` over `transport`.
    fn proxy(&self, at: SocketAddr, transport: Transport) -> Proxy {
        let p = Proxy::new(at, transport, "", self.branch_key);
        match &self.local {
            Some(all) => p.with_addresses(Arc::clone(all), self.me),
            None => p.with_addresses(Arc::from([self.me]), self.me),
        }
    }

    /// For upstreams that keep no Path: NATed phones' Contacts rewritten or aliased on the way
    /// up, and requests for such a Contact sent where it says.
    pub fn with_contact_fix(mut self, fix: ContactFix) -> Self {
        self.contact_fix = fix;
        self
    }

    /// The upstream registrar or PBX.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Routes a request that arrived over `flow` (its top Via already carries `received` and
    /// `rport`).
    pub fn request(&self, msg: &Message<'_>, flow: Flow) -> Action {
        let StartLine::Request { method, uri } = msg.start_line() else {
            return Action::Drop;
        };
        let refuse = |code: u16, reason: &str| {
            if method == Method::ACK {
                Action::Drop // never answered (RFC 3261 §17.2.3)
            } else {
                Action::Respond(response(msg, code, reason, "fse", &[]))
            }
        };
        let proxy = self.proxy(flow.local, flow.transport);
        let from_upstream = flow.remote == self.upstream;
        let routes: Vec<_> = msg.routes(HeaderName::Route).collect();
        if method == Method::OPTIONS
            && routes.is_empty()
            && uri.user().is_none()
            && proxy.is_me(&uri)
        {
            return Action::Answer(response(msg, 200, "OK", "fse", &[("Allow", ALLOW)]));
        }
        if msg.max_forwards() == Some(0) {
            return refuse(483, "Too Many Hops");
        }
        let mut edits = Edits::new(msg.as_bytes());
        // A Route naming us is ours to remove; its user part may be a flow token. A request
        // that came over the token's flow is the phone's own and goes on upstream; any other
        // goes out over that flow (RFC 5626 §5.3).
        let mut over: Option<Flow> = None;
        let mut next_route = routes.first();
        if let Some(top) = next_route.map(|r| r.uri())
            && proxy.is_me(&top)
        {
            remove_first_item(msg, HeaderName::Route, &mut edits);
            next_route = routes.get(1);
            if let Some(token) = top.user() {
                let Some(f) = self.tokens.flow(token) else {
                    // Forged, altered, or signed by a key this edge no longer has.
                    return refuse(403, "Forbidden");
                };
                if f != flow {
                    over = Some(f);
                }
            }
        }
        // A request from an upstream that keeps no Path, to a Contact the edge fixed: the
        // phone's flow it goes out on.
        let mut fixed: Option<Flow> = None;
        let (from, to, transport) = match over {
            Some(f) => (f.local, f.remote, f.transport),
            None if from_upstream => {
                // The upstream sends on along a Route it was given, or (for an upstream that
                // keeps no Path) to the Contact as the edge fixed it.
                let next = next_route.map(|r| r.uri());
                let toward_phone = |transport, remote| {
                    Some(Flow {
                        transport,
                        local: self.me,
                        remote,
                    })
                };
                if let Some(a) = next.as_ref().and_then(address_of) {
                    (self.me, a, Transport::Udp)
                } else if let Some((a, t)) =
                    crate::nat::alias_target(&uri).filter(|_| self.contact_fix == ContactFix::Alias)
                {
                    // nathelper's handle_ruri_alias: the alias comes off, the request goes there.
                    if let Some(Some(v)) = uri.params().get("alias")
                        && let Some(r) = msg.range_of(v)
                    {
                        edits.remove(r.start.saturating_sub(7)..r.end);
                    }
                    fixed = toward_phone(t, a);
                    (self.me, a, t)
                } else if self.contact_fix == ContactFix::Rewrite
                    && let Some(a) = address_of(&uri)
                {
                    let t = crate::proxy::transport_of(&uri);
                    fixed = toward_phone(t, a);
                    (self.me, a, t)
                } else {
                    return refuse(404, "Not Found");
                }
            }
            // Everything a phone sends goes to the upstream (over UDP), which routes it (along
            // any Route left, by loose routing).
            None => (self.me, self.upstream, Transport::Udp),
        };
        // For an upstream that keeps no Path: a NATed phone's Contact names where it is reached.
        if !from_upstream
            && over.is_none()
            && crate::nat::detect(msg, flow.remote, flow.transport).natted()
        {
            match self.contact_fix {
                ContactFix::None => {}
                ContactFix::Rewrite => crate::nat::rewrite_contacts(msg, flow.remote, &mut edits),
                ContactFix::Alias => {
                    crate::nat::alias_contacts(msg, flow.remote, flow.transport, &mut edits);
                }
            }
        }
        // The phone's flow: the one this came over, or the one it goes out on. A dialog the
        // phone is in keeps the edge in its route set (Record-Route with the flow's token), so
        // its ACK, BYE and re-INVITEs come back this way too, Path or not.
        let phone = over.or(fixed).unwrap_or(flow);
        let phone_side = over.is_some() || fixed.is_some() || !from_upstream;
        let mut more = String::new();
        if method == Method::REGISTER && !from_upstream {
            // RFC 3327 §5.1, RFC 5626 §5.1: the Path names the flow; `ob` when the phone does
            // outbound (it sent reg-id).
            let ob = msg.items(HeaderName::Contact).any(|c| {
                crate::NameAddr::parse(c).is_ok_and(|n| n.params().get("reg-id").is_some())
            });
            more = format!(
                "Path: <sip:{}@{};lr{}>\r\n",
                self.tokens.token(&flow),
                self.me,
                if ob { ";ob" } else { "" }
            );
        } else if phone_side
            && msg.to().tag().is_none()
            && (method == Method::INVITE || method.0 == b"SUBSCRIBE" || method.0 == b"REFER")
        {
            let token = self.tokens.token(&phone);
            more = proxy.record_route(Some(&token), Some(&token), transport, from);
        }
        proxy.hop(msg, &mut edits, &more, transport, from, proxy.branch(msg));
        match edits.apply() {
            Ok(bytes) => Action::Forward {
                bytes,
                transport,
                from,
                to,
            },
            Err(_) => Action::Drop,
        }
    }

    /// Routes a response: our Via comes off, and it goes where the next Via came from.
    pub fn response(&self, msg: &Message<'_>) -> Action {
        self.proxy(self.me, Transport::Udp).response(msg)
    }
}

/// The registrations passing through an edge, for keep-alives and the store: a REGISTER the
/// edge forwards is remembered with its flow and Contacts until the upstream's final answer;
/// a 2xx then yields the bindings the upstream granted for those Contacts (only those: the 2xx
/// lists the other devices of the address of record too), each with its `expires`.
#[derive(Debug, Default)]
pub struct EdgeRegistrations {
    pending: std::collections::HashMap<(Vec<u8>, u32), Pending>,
}

#[derive(Debug)]
struct Pending {
    flow: Flow,
    contacts: Vec<String>,
    nat: crate::nat::NatTests,
    since: Timestamp,
}

/// REGISTERs awaiting their answer, at most (the oldest are forgotten beyond).
const MAX_PENDING: usize = 10_000;
/// A REGISTER unanswered for this long is forgotten.
const PENDING_LIFETIME: Duration = Duration::from_secs(64);

impl EdgeRegistrations {
    /// Notes a REGISTER forwarded upstream that came over `flow`.
    pub fn forwarded(&mut self, msg: &Message<'_>, flow: Flow, now: Timestamp) {
        if msg.method() != Method::REGISTER {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending
                .retain(|_, p| now.duration_since(p.since) < PENDING_LIFETIME);
            if self.pending.len() >= MAX_PENDING {
                return;
            }
        }
        let contacts = msg
            .items(HeaderName::Contact)
            .filter_map(|c| crate::NameAddr::parse(c).ok())
            .map(|n| String::from_utf8_lossy(n.uri().as_bytes()).into_owned())
            .filter(|c| c != "*")
            .collect();
        let key = (msg.call_id().to_vec(), msg.cseq().number);
        self.pending.insert(
            key,
            Pending {
                flow,
                contacts,
                nat: crate::nat::detect(msg, flow.remote, flow.transport),
                since: now,
            },
        );
    }

    /// Looks at a response the edge forwards; for a 2xx to a REGISTER it remembered, the
    /// address of record and the bindings to mirror (an `expires_at` at or before `now`
    /// removes).
    pub fn response(
        &mut self,
        msg: &Message<'_>,
        now: Timestamp,
    ) -> Option<(String, Vec<crate::registrar::Binding>)> {
        let StartLine::Response { code, .. } = msg.start_line() else {
            return None;
        };
        let cseq = msg.cseq();
        if cseq.method != Method::REGISTER || code < 200 {
            return None;
        }
        let p = self
            .pending
            .remove(&(msg.call_id().to_vec(), cseq.number))?;
        if code >= 300 {
            return None;
        }
        let aor = crate::registrar::aor_of(&msg.to().uri())?;
        let header_expires = msg.expires();
        let granted: Vec<(String, u32)> = msg
            .items(HeaderName::Contact)
            .filter_map(|c| crate::NameAddr::parse(c).ok())
            .filter_map(|n| {
                let expires = n
                    .params()
                    .get("expires")
                    .flatten()
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                    .or(header_expires)?;
                Some((
                    String::from_utf8_lossy(n.uri().as_bytes()).into_owned(),
                    expires,
                ))
            })
            .collect();
        let bindings = p
            .contacts
            .iter()
            .map(|c| {
                let expires = granted.iter().find(|(g, _)| g == c).map_or(0, |(_, e)| *e);
                crate::registrar::Binding {
                    contact: c.clone(),
                    flow: p.flow,
                    expires_at: now + Duration::from_secs(u64::from(expires)),
                    instance: None,
                    reg_id: None,
                    call_id: String::from_utf8_lossy(msg.call_id()).into_owned(),
                    cseq: cseq.number,
                    path: Vec::new(),
                    nat: p.nat,
                    keepalive_failures: 0,
                }
            })
            .collect();
        Some((aor, bindings))
    }
}
