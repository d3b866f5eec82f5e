//! Binding lifetime discovery (RFC 5780 §4.6).
//!
//! One trial tries one idle time T: a fresh socket X sends a Binding request to the server
//! and learns its public port; nothing is sent from X for T (counted from X's last
//! request); then socket 0 sends a Binding request with RESPONSE-PORT set to X's public port.
//! The server answers to socket 0's public IP and that port, from the primary address X sent
//! to, so the answer passes any filter; if it arrives on X, X's binding survived T idle
//! seconds. An unanswered check (after all retransmissions) means it did not.
//!
//! [`Search`] picks the idle times: it doubles T from `resolution` until a trial fails or
//! `max` survives, then bisects between the longest survivor and the shortest failure until
//! they are `resolution` apart. That is a binary search over [resolution, max] whose cost
//! grows with the lifetime found rather than with `max` (a 20 s NAT with the defaults: 2, 4,
//! 8, 16, 32, 24, 20, 18 s). Trials run one after another, each on a new socket.

use std::time::Duration;

use crate::Lifetime;

/// The state of the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Search {
    resolution: Duration,
    max: Duration,
    alive: Option<Duration>,
    dead: Option<Duration>,
}

impl Search {
    /// A search over [`resolution`, `max`]. A zero `resolution` is raised to 1 ms.
    pub fn new(resolution: Duration, max: Duration) -> Self {
        let resolution = resolution.max(Duration::from_millis(1));
        Search {
            resolution,
            max: max.max(resolution),
            alive: None,
            dead: None,
        }
    }

    /// The idle time to try next, or `None` when the search is over.
    pub fn next_wait(&self) -> Option<Duration> {
        match (self.alive, self.dead) {
            (None, None) => Some(self.resolution),
            (Some(lo), None) if lo >= self.max => None,
            (Some(lo), None) => Some(lo.saturating_mul(2).min(self.max)),
            (lo, Some(hi)) => {
                let lo = lo.unwrap_or(Duration::ZERO);
                if hi.saturating_sub(lo) <= self.resolution {
                    None
                } else {
                    Some(lo + (hi - lo) / 2)
                }
            }
        }
    }

    /// Records a trial's outcome.
    pub fn record(&mut self, wait: Duration, alive: bool) {
        if alive {
            self.alive = Some(self.alive.map_or(wait, |a| a.max(wait)));
        } else {
            self.dead = Some(self.dead.map_or(wait, |d| d.min(wait)));
        }
    }

    /// What is known so far.
    pub fn result(&self) -> Lifetime {
        Lifetime {
            at_least: self.alive.unwrap_or(Duration::ZERO),
            less_than: self.dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a binding that lives `life` (alive iff wait < life).
    fn run(life: Duration, resolution: u64, max: u64) -> (Lifetime, Vec<u64>) {
        let mut s = Search::new(Duration::from_secs(resolution), Duration::from_secs(max));
        let mut tried = Vec::new();
        while let Some(w) = s.next_wait() {
            tried.push(w.as_secs());
            assert!(tried.len() < 64, "search does not end: {tried:?}");
            s.record(w, w < life);
        }
        (s.result(), tried)
    }

    #[test]
    fn finds_20_s_within_resolution() {
        let (r, tried) = run(Duration::from_secs(20), 2, 300);
        assert_eq!(tried, [2, 4, 8, 16, 32, 24, 20, 18]);
        assert_eq!(
            r,
            Lifetime {
                at_least: Duration::from_secs(18),
                less_than: Some(Duration::from_secs(20)),
            }
        );
    }

    #[test]
    fn every_lifetime_is_bracketed() {
        for life in 1..400u64 {
            let (r, _) = run(Duration::from_millis(life * 1000 + 500), 2, 300);
            let life = Duration::from_millis(life * 1000 + 500);
            match r.less_than {
                Some(hi) => {
                    assert!(r.at_least < life && life <= hi, "{life:?}: {r:?}");
                    assert!(hi - r.at_least <= Duration::from_secs(2), "{life:?}: {r:?}");
                }
                None => assert_eq!(r.at_least, Duration::from_secs(300), "{life:?}"),
            }
        }
    }

    #[test]
    fn a_binding_dead_at_the_first_trial() {
        let (r, tried) = run(Duration::from_secs(1), 2, 300);
        assert_eq!(tried, [2]);
        assert_eq!(r.at_least, Duration::ZERO);
        assert_eq!(r.less_than, Some(Duration::from_secs(2)));
    }
}
