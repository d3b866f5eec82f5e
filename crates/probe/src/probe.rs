//! The probe: runs the tests in order and turns answers and timeouts into a [`Report`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use farside_time::Timestamp;

use crate::lifetime::Search;
use crate::message::{self, Asks, Incoming, Reply};
use crate::progress::{Event, Progress, Test};
use crate::transaction::{Purpose, Schedule, Start, Transaction, Transactions};
use crate::{
    ClassicType, ProbeConfig, Report, SocketId, Transmit, filtering, hairpinning, mapping,
};

/// A sans-IO RFC 5780 NAT behaviour discovery client. See the [crate] documentation for
/// the loop that drives it.
#[derive(Debug)]
pub struct Probe {
    config: ProbeConfig,
    report: Report,
    rng: crate::rng::Rng,
    transactions: Transactions,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    locals: Vec<(SocketId, SocketAddr)>,
    next_socket: u32,
    stage: Stage,
    /// Outcomes of filtering tests II and III while they run (`None`: pending).
    filtering: Option<(Option<bool>, Option<bool>)>,
    hairpin: Hairpin,
    /// The repeated test I's public address, the mapping tests' baseline.
    mapping_i: Option<SocketAddr>,
    /// Test II's public address while mapping test III runs.
    mapping_ii: Option<SocketAddr>,
    lifetime: Option<LifetimeRun>,
}

/// Which tests may be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Test I.
    BindingI,
    /// Filtering and hairpinning, side by side.
    Discovery,
    /// Mapping tests II and III.
    Mapping,
    /// The binding lifetime search.
    Lifetime,
    /// Finished.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hairpin {
    Idle,
    /// Socket 1 asks the server for its public address.
    Learning,
    /// Sockets 0 and 1 send to each other's public address.
    Sending,
}

#[derive(Debug)]
struct LifetimeRun {
    search: Search,
    tried: bool,
    trial: Option<Trial>,
}

#[derive(Clone, Copy, Debug)]
struct Trial {
    wait: Duration,
    socket: SocketId,
    /// Set once the binding is open: when to check it, and its public port.
    check_at: Option<(Timestamp, u16)>,
}

impl Probe {
    /// Starts a probe of `config.server` from socket 0, bound to `local`; test I's request
    /// is ready in [`poll_transmit`](Self::poll_transmit). `seed` makes the transaction ids.
    pub fn new(config: ProbeConfig, local: SocketAddr, now: Timestamp, seed: u64) -> Self {
        let config = config.normalised();
        let schedule = Schedule {
            rto: config.rto,
            retransmits: config.retransmits,
        };
        let mut probe = Probe {
            report: Report::new(config.server, local),
            config,
            rng: crate::rng::Rng::new(seed),
            transactions: Transactions::new(schedule),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            locals: vec![(SocketId::MAIN, local)],
            next_socket: 2,
            stage: Stage::BindingI,
            filtering: None,
            hairpin: Hairpin::Idle,
            mapping_i: None,
            mapping_ii: None,
            lifetime: None,
        };
        probe.progress(Progress::Started(Test::Binding));
        let server = probe.config.server;
        probe.send(now, Purpose::BindingI, SocketId::MAIN, server, Asks::PLAIN);
        probe
    }

    /// A datagram arrived on local `socket` from `from`. Anything that is not an answer to
    /// one of the probe's requests (or one of its hairpinned requests) is ignored.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        if self.is_done() {
            return;
        }
        match message::read(bytes) {
            Incoming::Response(id, reply) => {
                // Only a lifetime check expects its answer elsewhere than where it was sent
                // from; an answer on the wrong socket to that one says RESPONSE-PORT was
                // ignored.
                let taken = self.transactions.take(id, |t| {
                    t.purpose != Purpose::Hairpin
                        && (t.answer_on == socket || t.purpose == Purpose::LifetimeCheck)
                });
                if let Some(t) = taken {
                    self.answered(now, &t, socket, from, reply);
                }
            }
            Incoming::Request(id) => {
                let taken = self.transactions.take(id, |t| {
                    t.purpose == Purpose::Hairpin && t.answer_on == socket
                });
                if taken.is_some() {
                    self.hairpin_arrived();
                }
            }
            Incoming::Ignored => {}
        }
        self.advance(now);
    }

    /// Time passed: resends requests, gives up on unanswered ones, and checks lifetime
    /// bindings whose wait is over.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.is_done() {
            return;
        }
        let mut sent = Vec::new();
        let failed = self.transactions.expire(now, &mut sent);
        self.transmits.extend(sent);
        for t in failed {
            if self.is_done() {
                break;
            }
            self.failed(now, &t);
        }
        self.wake_lifetime(now);
        self.advance(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None` once done.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.is_done() {
            return None;
        }
        let check = self
            .lifetime
            .as_ref()
            .and_then(|l| l.trial)
            .and_then(|t| t.check_at)
            .map(|(at, _)| at);
        match (self.transactions.next_timeout(), check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next progress line or the end.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The shell created `socket` (on the first transmit naming it) and bound it to `local`.
    pub fn local_address_of(&mut self, socket: SocketId, local: SocketAddr) {
        match self.locals.iter_mut().find(|(s, _)| *s == socket) {
            Some(entry) => entry.1 = local,
            None => self.locals.push((socket, local)),
        }
    }

    /// Whether the probe has finished; [`report`](Self::report) is then complete.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// What is known: complete once done, partial before.
    pub fn report(&self) -> &Report {
        &self.report
    }

    // --- dispatch -------------------------------------------------------------------------

    fn answered(
        &mut self,
        now: Timestamp,
        t: &Transaction,
        socket: SocketId,
        from: SocketAddr,
        reply: Reply,
    ) {
        match t.purpose {
            Purpose::BindingI => self.binding_i_answered(now, reply),
            Purpose::FilteringII | Purpose::FilteringIII => {
                self.filtering_answered(t.purpose, from, reply);
            }
            Purpose::MappingI | Purpose::MappingII | Purpose::MappingIII => {
                self.mapping_answered(now, t.purpose, reply);
            }
            Purpose::HairpinBinding => self.hairpin_learned(now, reply),
            Purpose::Hairpin => {}
            Purpose::LifetimeOpen => self.lifetime_opened(t, reply),
            Purpose::LifetimeCheck => self.lifetime_checked(now, t, socket, reply),
        }
    }

    fn failed(&mut self, now: Timestamp, t: &Transaction) {
        match t.purpose {
            Purpose::BindingI => {
                self.note(format!(
                    "no answer from {}: the server is down, or UDP is blocked on the way",
                    t.to
                ));
                self.finish();
            }
            Purpose::FilteringII => self.filtering_result(Some(false), None),
            Purpose::FilteringIII => self.filtering_result(None, Some(false)),
            Purpose::MappingI | Purpose::MappingII | Purpose::MappingIII => {
                self.note(format!("mapping test got no answer from {}", t.to));
                self.progress(Progress::Finished(Test::Mapping));
            }
            Purpose::HairpinBinding => {
                self.note(format!(
                    "hairpinning not tested: the second socket got no answer from {}",
                    t.to
                ));
                self.hairpin_over(None);
            }
            Purpose::Hairpin => {
                if self.hairpin == Hairpin::Sending && !self.transactions.any(Purpose::Hairpin) {
                    self.hairpin_over(Some(false));
                }
            }
            Purpose::LifetimeOpen => {
                self.lifetime_abort("a lifetime trial's binding request got no answer".into());
            }
            Purpose::LifetimeCheck => {
                self.lifetime_trial_over(false);
                self.next_trial(now);
            }
        }
    }

    /// Moves on once the current stage has nothing left to wait for.
    fn advance(&mut self, now: Timestamp) {
        loop {
            match self.stage {
                Stage::BindingI | Stage::Done => return,
                Stage::Discovery => {
                    if self.filtering.is_some() || self.hairpin != Hairpin::Idle {
                        return;
                    }
                    self.stage = Stage::Mapping;
                    self.start_mapping(now);
                }
                Stage::Mapping => {
                    if self.transactions.any(Purpose::MappingI)
                        || self.transactions.any(Purpose::MappingII)
                        || self.transactions.any(Purpose::MappingIII)
                    {
                        return;
                    }
                    self.stage = Stage::Lifetime;
                    self.start_lifetime(now);
                }
                Stage::Lifetime => {
                    if self.lifetime.is_some() {
                        return;
                    }
                    self.finish();
                }
            }
        }
    }

    // --- test I ---------------------------------------------------------------------------

    fn binding_i_answered(&mut self, now: Timestamp, reply: Reply) {
        self.report.reachable = true;
        self.progress(Progress::Finished(Test::Binding));
        let answer = match reply {
            Reply::Success(a) => a,
            Reply::Error(code) => {
                self.note(format!(
                    "the server answered the Binding request with error {code}"
                ));
                return self.finish();
            }
        };
        let Some(public) = answer.mapped else {
            self.note("the server's answer carried no mapped address".into());
            return self.finish();
        };
        self.report.public = Some(public);
        self.report.nat = Some(public != self.report.local);
        let server = self.config.server;
        match answer.other {
            None => {
                self.note(
                    "server has no RFC 5780 support (no OTHER-ADDRESS): only the public \
                     address is known"
                        .into(),
                );
                return self.finish();
            }
            Some(other) if other.ip() == server.ip() || other.is_ipv4() != server.is_ipv4() => {
                self.note(format!(
                    "server has no usable RFC 5780 support: OTHER-ADDRESS {other} is not \
                     another address of the same family"
                ));
                return self.finish();
            }
            Some(other) => {
                self.report.other_address = Some(other);
                self.report.rfc5780 = true;
            }
        }
        self.stage = Stage::Discovery;
        if self.config.filtering {
            self.progress(Progress::Started(Test::Filtering));
            self.filtering = Some((None, None));
            let main = SocketId::MAIN;
            self.send(
                now,
                Purpose::FilteringII,
                main,
                server,
                Asks::change(true, true),
            );
            self.send(
                now,
                Purpose::FilteringIII,
                main,
                server,
                Asks::change(false, true),
            );
        }
        if self.config.hairpinning && self.report.nat == Some(true) {
            self.progress(Progress::Started(Test::Hairpinning));
            self.hairpin = Hairpin::Learning;
            let s = SocketId::HAIRPIN;
            self.send_to(now, Purpose::HairpinBinding, s, s, server, Asks::PLAIN);
        }
    }

    /// The server showed it cannot do RFC 5780 after all: the probe ends after test I.
    fn abort_rfc5780(&mut self, note: String) {
        self.report.rfc5780 = false;
        self.report.filtering = None;
        self.report.mapping = None;
        self.report.hairpinning = None;
        self.filtering = None;
        self.hairpin = Hairpin::Idle;
        self.note(note);
        self.finish();
    }

    // --- filtering ------------------------------------------------------------------------

    fn filtering_answered(&mut self, purpose: Purpose, from: SocketAddr, reply: Reply) {
        let server = self.config.server;
        match reply {
            Reply::Error(code) => self.abort_rfc5780(format!(
                "server answered CHANGE-REQUEST with error {code}: no RFC 5780 support"
            )),
            Reply::Success(_) if purpose == Purpose::FilteringII => {
                if filtering::test_ii_honoured(server, from) {
                    self.filtering_result(Some(true), None);
                } else {
                    self.abort_rfc5780(format!(
                        "server ignored CHANGE-REQUEST (change IP answered from {from}): no \
                         RFC 5780 support"
                    ));
                }
            }
            Reply::Success(_) => {
                if filtering::test_iii_honoured(server, from) {
                    self.filtering_result(None, Some(true));
                } else {
                    self.abort_rfc5780(format!(
                        "server ignored CHANGE-REQUEST (change port answered from {from}): no \
                         RFC 5780 support"
                    ));
                }
            }
        }
    }

    fn filtering_result(&mut self, ii: Option<bool>, iii: Option<bool>) {
        let Some((run_ii, run_iii)) = &mut self.filtering else {
            return;
        };
        *run_ii = ii.or(*run_ii);
        *run_iii = iii.or(*run_iii);
        let verdict = match (*run_ii, *run_iii) {
            (Some(true), _) => filtering::behaviour(true, false),
            (Some(ii), Some(iii)) => filtering::behaviour(ii, iii),
            _ => return,
        };
        self.report.filtering = Some(verdict);
        self.filtering = None;
        self.transactions
            .cancel(|t| matches!(t.purpose, Purpose::FilteringII | Purpose::FilteringIII));
        self.progress(Progress::Finished(Test::Filtering));
    }

    // --- hairpinning ----------------------------------------------------------------------

    fn hairpin_learned(&mut self, now: Timestamp, reply: Reply) {
        let Reply::Success(message::Answer {
            mapped: Some(second),
            ..
        }) = reply
        else {
            self.note("hairpinning not tested: the second socket learned no public address".into());
            return self.hairpin_over(None);
        };
        let Some(first) = self.report.public else {
            return self.hairpin_over(None);
        };
        self.hairpin = Hairpin::Sending;
        let (main, other) = (SocketId::MAIN, SocketId::HAIRPIN);
        self.send_to(now, Purpose::Hairpin, main, other, second, Asks::PLAIN);
        self.send_to(now, Purpose::Hairpin, other, main, first, Asks::PLAIN);
    }

    fn hairpin_arrived(&mut self) {
        self.transactions.cancel(|t| t.purpose == Purpose::Hairpin);
        self.hairpin_over(Some(true));
    }

    fn hairpin_over(&mut self, result: Option<bool>) {
        self.report.hairpinning = result;
        self.hairpin = Hairpin::Idle;
        self.progress(Progress::Finished(Test::Hairpinning));
    }

    // --- mapping --------------------------------------------------------------------------

    fn start_mapping(&mut self, now: Timestamp) {
        if !self.config.mapping || self.report.other_address.is_none() {
            return;
        }
        self.progress(Progress::Started(Test::Mapping));
        let server = self.config.server;
        self.send(now, Purpose::MappingI, SocketId::MAIN, server, Asks::PLAIN);
    }

    fn mapping_answered(&mut self, now: Timestamp, purpose: Purpose, reply: Reply) {
        let mapped = match reply {
            Reply::Success(a) => a.mapped,
            Reply::Error(code) => {
                self.note(format!("mapping test answered with error {code}"));
                None
            }
        };
        let (Some(mapped), Some(first)) = (mapped, self.report.public) else {
            self.note("mapping test's answer carried no mapped address".into());
            return self.progress(Progress::Finished(Test::Mapping));
        };
        let verdict = match (purpose, self.mapping_ii) {
            (Purpose::MappingI, _) => {
                if mapped != first {
                    self.note(format!(
                        "socket 0's public address changed from {first} to {mapped} during the \
                         tests: the NAT's binding lifetime may be shorter than {:?}",
                        self.config.rto.saturating_mul(16)
                    ));
                }
                self.mapping_i = Some(mapped);
                if let Some(other) = self.report.other_address {
                    let to = mapping::test_ii_target(self.config.server, other);
                    self.send(now, Purpose::MappingII, SocketId::MAIN, to, Asks::PLAIN);
                }
                return;
            }
            (Purpose::MappingIII, Some(second)) => mapping::after_test_iii(second, mapped),
            _ => match mapping::after_test_ii(self.mapping_i.unwrap_or(first), mapped) {
                Some(b) => b,
                None => {
                    self.mapping_ii = Some(mapped);
                    if let Some(other) = self.report.other_address {
                        let to = mapping::test_iii_target(other);
                        self.send(now, Purpose::MappingIII, SocketId::MAIN, to, Asks::PLAIN);
                    }
                    return;
                }
            },
        };
        self.report.mapping = Some(verdict);
        self.progress(Progress::Finished(Test::Mapping));
    }

    // --- binding lifetime -----------------------------------------------------------------

    fn start_lifetime(&mut self, now: Timestamp) {
        let Some(cfg) = self.config.lifetime else {
            return;
        };
        if !self.report.rfc5780 {
            return;
        }
        self.progress(Progress::Started(Test::Lifetime));
        self.lifetime = Some(LifetimeRun {
            search: Search::new(cfg.resolution, cfg.max),
            tried: false,
            trial: None,
        });
        self.next_trial(now);
    }

    fn next_trial(&mut self, now: Timestamp) {
        let Some(run) = &mut self.lifetime else {
            return;
        };
        let Some(wait) = run.search.next_wait() else {
            self.report.lifetime = Some(run.search.result());
            self.lifetime = None;
            return self.progress(Progress::Finished(Test::Lifetime));
        };
        let socket = SocketId(self.next_socket);
        self.next_socket = self.next_socket.wrapping_add(1).max(2);
        run.trial = Some(Trial {
            wait,
            socket,
            check_at: None,
        });
        let server = self.config.server;
        self.send_to(
            now,
            Purpose::LifetimeOpen,
            socket,
            socket,
            server,
            Asks::PLAIN,
        );
    }

    fn lifetime_opened(&mut self, t: &Transaction, reply: Reply) {
        let Reply::Success(message::Answer {
            mapped: Some(public),
            ..
        }) = reply
        else {
            return self.lifetime_abort("a lifetime trial's binding got no mapped address".into());
        };
        let Some(trial) = self.lifetime.as_mut().and_then(|l| l.trial.as_mut()) else {
            return;
        };
        // The NAT's idle timer restarted with the last request X sent.
        let at = t.last_sent.checked_add(trial.wait).unwrap_or(t.last_sent);
        trial.check_at = Some((at, public.port()));
        let wait = trial.wait;
        self.progress(Progress::LifetimeWaiting { wait });
    }

    fn wake_lifetime(&mut self, now: Timestamp) {
        let Some(trial) = self.lifetime.as_mut().and_then(|l| l.trial.as_mut()) else {
            return;
        };
        let Some((at, port)) = trial.check_at else {
            return;
        };
        if at > now {
            return;
        }
        trial.check_at = None;
        let answer_on = trial.socket;
        let asks = Asks {
            response_port: Some(port),
            ..Asks::PLAIN
        };
        let server = self.config.server;
        self.send_to(
            now,
            Purpose::LifetimeCheck,
            SocketId::MAIN,
            answer_on,
            server,
            asks,
        );
    }

    fn lifetime_checked(
        &mut self,
        now: Timestamp,
        t: &Transaction,
        socket: SocketId,
        reply: Reply,
    ) {
        match reply {
            Reply::Success(_) if socket == t.answer_on => {
                self.lifetime_trial_over(true);
                self.next_trial(now);
            }
            Reply::Success(_) => self.lifetime_abort(
                "server ignored RESPONSE-PORT: the binding lifetime cannot be measured".into(),
            ),
            Reply::Error(code) => self.lifetime_abort(format!(
                "server refused RESPONSE-PORT with error {code}: the binding lifetime cannot \
                 be measured"
            )),
        }
    }

    /// Records the trial in flight; the caller starts the next one.
    fn lifetime_trial_over(&mut self, alive: bool) {
        let Some(run) = &mut self.lifetime else {
            return;
        };
        let Some(trial) = run.trial.take() else {
            return;
        };
        run.search.record(trial.wait, alive);
        run.tried = true;
        self.progress(Progress::LifetimeTrial {
            wait: trial.wait,
            alive,
        });
    }

    fn lifetime_abort(&mut self, note: String) {
        if let Some(run) = self.lifetime.take() {
            self.report.lifetime = run.tried.then(|| run.search.result());
        }
        self.transactions
            .cancel(|t| matches!(t.purpose, Purpose::LifetimeOpen | Purpose::LifetimeCheck));
        self.note(note);
        self.progress(Progress::Finished(Test::Lifetime));
    }

    // --- plumbing -------------------------------------------------------------------------

    fn finish(&mut self) {
        self.stage = Stage::Done;
        self.transactions.cancel(|_| true);
        self.lifetime = None;
        let r = &mut self.report;
        r.classic = if r.reachable {
            ClassicType::classify(r.nat, r.mapping, r.filtering)
        } else {
            ClassicType::UdpBlocked
        };
        if r.hairpinning == Some(false) && hairpinning::no_is_ambiguous(r.mapping, r.filtering) {
            r.notes.push(hairpinning::AMBIGUOUS_NOTE.into());
        }
        self.events.push_back(Event::Done);
    }

    fn send(&mut self, now: Timestamp, purpose: Purpose, s: SocketId, to: SocketAddr, asks: Asks) {
        self.send_to(now, purpose, s, s, to, asks);
    }

    fn send_to(
        &mut self,
        now: Timestamp,
        purpose: Purpose,
        socket: SocketId,
        answer_on: SocketId,
        to: SocketAddr,
        asks: Asks,
    ) {
        let id = self.rng.transaction_id();
        let start = Start {
            id,
            purpose,
            socket,
            answer_on,
            to,
            payload: message::binding_request(id, asks),
        };
        let mut sent = Vec::with_capacity(1);
        self.transactions.start(now, start, &mut sent);
        self.transmits.extend(sent);
    }

    fn progress(&mut self, p: Progress) {
        self.events.push_back(Event::Progress(p));
    }

    fn note(&mut self, note: String) {
        self.report.notes.push(note);
    }
}
