//! A stateless proxy (RFC 3261 §16, §16.11) in front of the registrar: a request for a local
//! user goes to the flow that user registered over, with the Request-URI set to the Contact
//! the phone registered; Record-Route keeps the dialog's later requests coming through here,
//! so they can reach a NATed phone by its flow too. Responses follow the Via back. Requests
//! for other domains are refused (no open relay).

use farside_time::Timestamp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::edit::Edits;
use crate::flow_token::FlowTokens;
use crate::header::HeaderName;
use crate::message::{Message, Method, StartLine};
use crate::nat::Transport;
use crate::registrar::{Flow, Registrar, aor_of};
use crate::response::response;
use crate::scan::{hash64, split_top, trim};
use crate::uri::{Uri, ip_literal};

/// The methods Farside handles, for `Allow`.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY";

/// What to do with a request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer the sender with these bytes: a request for the server itself, answered 200.
    Answer(Vec<u8>),
    /// Answer the sender with these bytes (a final error response of the proxy's own).
    Respond(Vec<u8>),
    /// Send these bytes from Farside's address `from` to `to`.
    Forward {
        /// The rewritten message.
        bytes: Vec<u8>,
        /// Over which transport (for a stream, the connection to `to`).
        transport: Transport,
        /// Farside's socket to send from (a flow's local end, or the proxy's address).
        from: SocketAddr,
        /// Where to.
        to: SocketAddr,
    },
    /// Nothing to send (an ACK with nowhere to go, a response not for us).
    Drop,
}

/// The proxy: its own address (in Via and Record-Route) and the domain it serves.
#[derive(Debug, Clone)]
pub struct Proxy {
    me: SocketAddr,
    transport: Transport,
    /// This server's other addresses (its listeners, shared): a Route or Via naming `me` or
    /// any of them is ours.
    local: Option<Arc<[SocketAddr]>>,
    /// The address requests and responses sent over UDP leave from (and their Via names).
    udp: SocketAddr,
    /// The flow the request came over, and the key of the flow tokens in our Record-Routes
    /// (RFC 5626 §5.3): in-dialog requests for a phone on a connection find it by them.
    flow: Option<(Flow, FlowTokens)>,
    domain: String,
    branch_key: u64,
}

impl Proxy {
    /// A proxy at `me` (reached over `transport`) for `domain`; `branch_key` (random) salts
    /// its Via branches.
    pub fn new(me: SocketAddr, transport: Transport, domain: &str, branch_key: u64) -> Self {
        Proxy {
            me,
            transport,
            local: None,
            udp: me,
            flow: None,
            domain: domain.to_ascii_lowercase(),
            branch_key,
        }
    }

    /// The server's other addresses: `all` its listeners, `udp` the UDP socket that sends
    /// what leaves over UDP (when `me` is a TCP or TLS listener).
    pub fn with_addresses(mut self, all: Arc<[SocketAddr]>, udp: SocketAddr) -> Self {
        self.local = Some(all);
        self.udp = udp;
        self
    }

    /// Whether `ip:port` is one of this server's addresses.
    fn ours(&self, ip: IpAddr, port: u16) -> bool {
        let at = |a: &SocketAddr| a.ip() == ip && a.port() == port;
        at(&self.me) || self.local.as_deref().is_some_and(|l| l.iter().any(at))
    }

    /// The flow the request came over, and the key for flow tokens: Record-Routes then name
    /// the flows of both sides, and a request routed by one of them leaves over that flow.
    pub fn with_flow(mut self, flow: Flow, tokens: FlowTokens) -> Self {
        self.flow = Some((flow, tokens));
        self
    }

    /// Where something sent over `transport` to an address (not a flow) leaves from.
    fn sender(&self, transport: Transport) -> SocketAddr {
        if transport.is_stream() {
            self.me
        } else {
            self.udp
        }
    }

    /// Routes a request (its top Via already carries `received`/`rport`). A request for a
    /// local user with several bindings goes to the one registered last (see [`Proxy::fork`]).
    pub fn request(&self, msg: &Message<'_>, registrar: &Registrar, now: Timestamp) -> Action {
        match self.plan(msg, registrar, now) {
            Ok(plan) => self.build(msg, &plan, 0),
            Err(action) => action,
        }
    }

    /// As [`Proxy::request`], but a request for a local user goes to each of its bindings
    /// (parallel forking, RFC 3261 §16.6), newest first, each with a branch of its own; at most
    /// `max` of them.
    pub fn fork(
        &self,
        msg: &Message<'_>,
        registrar: &Registrar,
        now: Timestamp,
        max: usize,
    ) -> Vec<Action> {
        match self.plan(msg, registrar, now) {
            Ok(plan) => (0..plan.targets.len().min(max.max(1)))
                .map(|i| self.build(msg, &plan, i))
                .collect(),
            Err(action) => vec![action],
        }
    }

    /// Where a request goes (§16.4-16.5): the Routes of ours to drop, and the targets.
    fn plan(
        &self,
        msg: &Message<'_>,
        registrar: &Registrar,
        now: Timestamp,
    ) -> Result<Plan, Action> {
        let StartLine::Request { method, uri } = msg.start_line() else {
            return Err(Action::Drop);
        };
        let refuse = |code: u16, reason: &str| {
            if method == Method::ACK {
                Action::Drop // ACK is never answered (RFC 3261 §17.2.3)
            } else {
                Action::Respond(response(msg, code, reason, "fsp", &[]))
            }
        };
        // OPTIONS for the server itself (a peer's or a monitor's health check, RFC 3261 §11):
        // answered here, Max-Forwards 0 included (RFC 4475 §3.3.11).
        let for_us = uri.user().is_none() && (self.is_me(&uri) || self.is_local(&uri));
        if method == Method::OPTIONS && for_us && msg.value(HeaderName::Route).is_none() {
            return Err(Action::Answer(response(
                msg,
                200,
                "OK",
                "fsp",
                &[("Allow", ALLOW)],
            )));
        }
        // §16.3: Max-Forwards.
        if msg.max_forwards() == Some(0) {
            return Err(refuse(483, "Too Many Hops"));
        }
        // §16.4: a Route naming us is ours to remove.
        let routes: Vec<_> = msg.routes(HeaderName::Route).collect();
        let mut next_route = routes.first().map(|r| r.uri());
        // Two of ours in a row: we record-routed twice, across transports (RFC 5658).
        let ours = routes
            .iter()
            .take(2)
            .take_while(|r| self.is_me(&r.uri()))
            .count();
        let routed_here = ours > 0;
        if routed_here {
            next_route = routes.get(ours).map(|r| r.uri());
        }
        // A flow token in one of ours names the flow of a side of the dialog: a request that
        // did not come over it goes out over it.
        let token_flow = self.flow.as_ref().and_then(|(arrived, tokens)| {
            routes[..ours]
                .iter()
                .filter_map(|r| tokens.flow(r.uri().user()?))
                .find(|f| f != arrived)
        });
        let one = |to, from, new_uri, transport| {
            Ok(Plan {
                ours,
                targets: vec![Target {
                    to,
                    from,
                    new_uri,
                    transport,
                    route: None,
                }],
            })
        };
        // Where it goes: a flow a token named; the next Route; a registered Contact (in-dialog
        // requests to a phone); a local user's flows; else refused.
        if let Some(f) = token_flow {
            one(f.remote, f.local, None, f.transport)
        } else if let Some(r) = next_route {
            match address_of(&r) {
                Some(a) => one(a, self.sender(transport_of(&r)), None, transport_of(&r)),
                None => Err(refuse(404, "Not Found")),
            }
        } else if let Some(flow) = self.contact_flow(&uri, registrar, now) {
            one(flow.remote, flow.local, None, flow.transport)
        } else if self.is_local(&uri) {
            let Some(aor) = aor_of(&uri) else {
                return Err(refuse(404, "Not Found"));
            };
            let mut bindings: Vec<_> = registrar.bindings(&aor, now).collect();
            bindings.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
            let mut targets: Vec<Target> = bindings
                .iter()
                .map(|b| Target {
                    to: b.flow.remote,
                    from: b.flow.local,
                    new_uri: Some(b.contact.clone()),
                    transport: b.flow.transport,
                    route: None,
                })
                .collect();
            targets.extend(self.elsewhere(&aor, &bindings, registrar, now));
            if targets.is_empty() {
                return Err(refuse(480, "Temporarily Unavailable"));
            }
            Ok(Plan { ours, targets })
        } else if routed_here && !self.is_me(&uri) && msg.to().tag().is_some() {
            // Inside a dialog we record-routed: on to the Request-URI (loose routing, §16.12),
            // but never to this host's own or a non-unicast address.
            match address_of(&uri) {
                Some(a)
                    if !a.ip().is_loopback()
                        && !a.ip().is_unspecified()
                        && !a.ip().is_multicast() =>
                {
                    one(a, self.sender(transport_of(&uri)), None, transport_of(&uri))
                }
                Some(_) => Err(refuse(403, "Forbidden")),
                None => Err(refuse(404, "Not Found")),
            }
        } else if self.is_me(&uri) {
            Err(refuse(404, "Not Found"))
        } else {
            Err(refuse(403, "Relaying Denied"))
        }
    }

    /// Targets for the bindings of `aor` other nodes hold (a shared store): each goes to the
    /// node holding its flow, over UDP, with a Route naming that node and the flow's token
    /// (the nodes share the token key), so that node sends it down the flow as it sends a
    /// request routed by its own Record-Route. A phone instance this node holds a flow of is
    /// reached over that one only (RFC 5626 §5.3: any flow of an instance reaches it; ours is
    /// a hop shorter and outlives the other node).
    fn elsewhere(
        &self,
        aor: &str,
        here: &[&crate::registrar::Binding],
        registrar: &Registrar,
        now: Timestamp,
    ) -> Vec<Target> {
        let Some((_, tokens)) = &self.flow else {
            return Vec::new();
        };
        registrar
            .bindings_elsewhere(aor, now)
            .filter(|b| b.instance.is_none() || here.iter().all(|h| h.instance != b.instance))
            .filter(|b| !self.ours(b.flow.local.ip(), b.flow.local.port()))
            .map(|b| Target {
                to: b.flow.local,
                from: self.udp,
                new_uri: Some(b.contact.clone()),
                transport: Transport::Udp,
                route: Some(format!(
                    "<sip:{}@{};lr>",
                    tokens.token(&b.flow),
                    b.flow.local
                )),
            })
            .collect()
    }

    /// The request for target `i` of `plan` (§16.6): our Routes off, the Request-URI set,
    /// Record-Route, Max-Forwards, our Via with a branch of its own for each target.
    fn build(&self, msg: &Message<'_>, plan: &Plan, i: usize) -> Action {
        let StartLine::Request { method, uri } = msg.start_line() else {
            return Action::Drop;
        };
        let Some(t) = plan.targets.get(i) else {
            return Action::Drop;
        };
        let mut edits = Edits::new(msg.as_bytes());
        if plan.ours > 0 {
            remove_routes(msg, plan.ours, &mut edits);
        }
        if let Some(contact) = &t.new_uri
            && let Some(r) = msg.range_of(uri.as_bytes())
        {
            edits.replace(r, contact.as_bytes());
        }
        // A dialog-creating request gets our Record-Route, naming each side's flow.
        let record_route = if method == Method::INVITE || method.0 == b"SUBSCRIBE" {
            let token = |f: Flow| self.flow.as_ref().map(|(_, t)| t.token(&f));
            let out = Flow {
                transport: t.transport,
                local: t.from,
                remote: t.to,
            };
            let arrived = self.flow.as_ref().map(|(f, _)| *f);
            self.record_route(
                token(out).as_deref(),
                arrived.and_then(token).as_deref(),
                t.transport,
                t.from,
            )
        } else {
            String::new()
        };
        let branch = match i {
            0 => self.branch(msg),
            i => hash64(self.branch(msg), &[&(i as u64).to_be_bytes()]),
        };
        self.hop(msg, &mut edits, &record_route, t.transport, t.from, branch);
        if let Some(route) = &t.route {
            edits.insert(first_header(msg), format!("Route: {route}\r\n").as_bytes());
        }
        match edits.apply() {
            Ok(bytes) => Action::Forward {
                bytes,
                transport: t.transport,
                from: t.from,
                to: t.to,
            },
            Err(_) => Action::Drop,
        }
    }

    /// The edits every forwarded request gets (§16.6 steps 3 and 8): Max-Forwards one less
    /// (70 when absent), and our Via on top followed by `more` (whole header lines).
    pub(crate) fn hop<'a>(
        &self,
        msg: &Message<'a>,
        edits: &mut Edits<'a>,
        more: &str,
        transport: Transport,
        via: SocketAddr,
        branch: u64,
    ) {
        match (msg.max_forwards(), msg.value(HeaderName::MaxForwards)) {
            (Some(n), Some(v)) => {
                if let Some(r) = msg.range_of(v) {
                    edits.replace(r, n.saturating_sub(1).to_string().as_bytes());
                }
            }
            _ => {
                edits.insert(first_header(msg), b"Max-Forwards: 70\r\n");
            }
        }
        let top = format!(
            "Via: SIP/2.0/{} {};branch=z9hG4bK{:016x}\r\n{more}",
            transport.via_name(),
            via,
            branch
        );
        edits.insert(first_header(msg), top.as_bytes());
    }

    /// Routes a response: our Via comes off, and it goes where the next Via says it came from.
    pub fn response(&self, msg: &Message<'_>) -> Action {
        if !self.via_is_mine(msg) {
            return Action::Drop;
        }
        let Some(next) = msg.vias().nth(1) else {
            return Action::Drop;
        };
        let ip = next
            .received()
            .and_then(|r| std::str::from_utf8(r).ok()?.parse::<IpAddr>().ok())
            .or_else(|| ip_literal(next.host()));
        let port = next
            .rport()
            .flatten()
            .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u16>().ok())
            .or(next.port())
            .unwrap_or(5060);
        let Some(ip) = ip else {
            return Action::Drop;
        };
        let transport = Transport::from_name(next.transport()).unwrap_or(Transport::Udp);
        let mut edits = Edits::new(msg.as_bytes());
        remove_first_item(msg, HeaderName::Via, &mut edits);
        match edits.apply() {
            Ok(bytes) => Action::Forward {
                bytes,
                transport,
                from: self.sender(transport),
                to: SocketAddr::new(ip, port),
            },
            Err(_) => Action::Drop,
        }
    }

    /// A stateless branch (§16.11): the same for a retransmission and for the CANCEL of an
    /// INVITE (both carry the incoming top Via's branch), different across transactions.
    pub(crate) fn branch(&self, msg: &Message<'_>) -> u64 {
        let via = msg.via();
        let key = via.branch().unwrap_or(via.as_bytes());
        // An ACK to a 2xx is a transaction of its own.
        if msg.method() == Method::ACK {
            hash64(self.branch_key, &[key, b"ACK"])
        } else {
            hash64(self.branch_key, &[key])
        }
    }

    fn via_is_mine(&self, msg: &Message<'_>) -> bool {
        let v = msg.via();
        let port = v.port().unwrap_or(5060);
        ip_literal(v.host()).is_some_and(|ip| self.ours(ip, port))
    }

    /// Whether `uri` names this proxy's own address.
    pub(crate) fn is_me(&self, uri: &Uri<'_>) -> bool {
        let port = uri.port().unwrap_or(5060);
        ip_literal(uri.host()).is_some_and(|ip| self.ours(ip, port))
    }

    /// Whether `uri` is in the served domain.
    fn is_local(&self, uri: &Uri<'_>) -> bool {
        uri.is_sip() && uri.host().eq_ignore_ascii_case(self.domain.as_bytes())
    }

    /// The flow of the binding whose Contact has `uri`'s host and port (a request inside a
    /// dialog with a registered phone, sent to the Contact it gave; phones vary the user part
    /// between REGISTER and dialogs, never the address).
    fn contact_flow(&self, uri: &Uri<'_>, registrar: &Registrar, now: Timestamp) -> Option<Flow> {
        if !uri.is_sip() {
            return None;
        }
        let port = uri.port().unwrap_or(5060);
        registrar
            .all()
            .flat_map(|(_, bs)| bs.iter())
            .find(|b| {
                b.expires_at > now
                    && Uri::parse(b.contact.as_bytes()).is_ok_and(|c| {
                        c.host().eq_ignore_ascii_case(uri.host())
                            && c.port().unwrap_or(5060) == port
                    })
            })
            .map(|b| b.flow)
    }
}

impl Proxy {
    /// Our Record-Route for a request that arrived over this proxy's transport at `me` and
    /// leaves over `out` from `out_addr`: one URI, or two when they differ (RFC 5658 double
    /// record-routing: each side then reaches us at its own). `user` is a flow token.
    pub(crate) fn record_route(
        &self,
        user: Option<&str>,
        user_in: Option<&str>,
        out: Transport,
        out_addr: SocketAddr,
    ) -> String {
        let uri = |user: Option<&str>, t: Transport, at: SocketAddr| {
            let user = user.map(|u| format!("{u}@")).unwrap_or_default();
            let param = match t {
                Transport::Udp => String::new(),
                t => format!(";transport={}", t.via_name().to_ascii_lowercase()),
            };
            format!("<sip:{user}{at}{param};lr>")
        };
        let (first, second) = (
            uri(user, out, out_addr),
            uri(user_in, self.transport, self.me),
        );
        if first == second {
            format!("Record-Route: {first}\r\n")
        } else {
            // The callee's route set starts with the first: the URI for its side.
            format!("Record-Route: {first}\r\nRecord-Route: {second}\r\n")
        }
    }
}

/// Where a request goes: how many Routes of ours come off, and to which targets.
struct Plan {
    ours: usize,
    targets: Vec<Target>,
}

/// One place a request goes.
struct Target {
    to: SocketAddr,
    from: SocketAddr,
    /// A new Request-URI (a binding's Contact).
    new_uri: Option<String>,
    transport: Transport,
    /// A Route to put on top (the node holding a flow, for a binding held elsewhere).
    route: Option<String>,
}

/// The transport a URI asks for (`transport=`), UDP when none.
pub(crate) fn transport_of(uri: &Uri<'_>) -> Transport {
    uri.params()
        .get("transport")
        .flatten()
        .and_then(Transport::from_name)
        .unwrap_or(Transport::Udp)
}

/// Removes the first `count` Route values, across fields.
fn remove_routes<'a>(msg: &Message<'a>, count: usize, edits: &mut Edits<'a>) {
    let mut left = count;
    for h in msg.fields(HeaderName::Route) {
        if left == 0 {
            return;
        }
        let items: Vec<&[u8]> = split_top(h.value, b',').into_iter().flatten().collect();
        if items.len() <= left {
            edits.remove(h.line.clone());
            left -= items.len();
        } else {
            let (Some(a), Some(b)) = (msg.range_of(items[0]), msg.range_of(trim(items[left])))
            else {
                return;
            };
            edits.remove(a.start..b.start);
            return;
        }
    }
}

/// Where the first header field starts (new fields go before it).
pub(crate) fn first_header(msg: &Message<'_>) -> usize {
    msg.headers()
        .first()
        .map_or(msg.headers_end(), |h| h.line.start)
}

/// Removes the first value of the first `name` field: the whole line if it holds only that.
pub(crate) fn remove_first_item<'a>(msg: &Message<'a>, name: HeaderName, edits: &mut Edits<'a>) {
    let Some(h) = msg.fields(name).next() else {
        return;
    };
    let mut items = split_top(h.value, b',').into_iter().flatten();
    let (Some(first), second) = (items.next(), items.next()) else {
        return;
    };
    match second {
        None => {
            edits.remove(h.line.clone());
        }
        Some(second) => {
            let (Some(a), Some(b)) = (msg.range_of(first), msg.range_of(trim(second))) else {
                return;
            };
            edits.remove(a.start..b.start);
        }
    }
}

/// The address a URI names when its host is an IP literal (no DNS here).
pub(crate) fn address_of(uri: &Uri<'_>) -> Option<SocketAddr> {
    Some(SocketAddr::new(
        ip_literal(uri.host())?,
        uri.port().unwrap_or(5060),
    ))
}
