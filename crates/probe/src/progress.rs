//! What the probe tells the shell as it goes.

use std::fmt;
use std::time::Duration;

/// Something for the shell to act on or show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A test started or finished: for a progress line.
    Progress(Progress),
    /// The probe has finished; [`crate::Probe::report`] is complete.
    Done,
}

/// One of the probe's tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// Test I: the public address and the server's OTHER-ADDRESS.
    Binding,
    /// The filtering tests (RFC 5780 §4.4).
    Filtering,
    /// The hairpinning test (§4.5).
    Hairpinning,
    /// The mapping tests II and III (§4.3).
    Mapping,
    /// The binding lifetime search (§4.6).
    Lifetime,
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Test::Binding => "binding test",
            Test::Filtering => "filtering tests",
            Test::Hairpinning => "hairpinning test",
            Test::Mapping => "mapping tests",
            Test::Lifetime => "binding lifetime search",
        })
    }
}

/// A step of the probe, for a progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A test started.
    Started(Test),
    /// A test finished (its result is in the report).
    Finished(Test),
    /// A binding lifetime trial opened a binding and now waits `wait` before checking it.
    LifetimeWaiting {
        /// The idle time tried.
        wait: Duration,
    },
    /// A binding lifetime trial ended.
    LifetimeTrial {
        /// The idle time tried.
        wait: Duration,
        /// Whether the binding still worked after it.
        alive: bool,
    },
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Started(t) => write!(f, "{t} started"),
            Progress::Finished(t) => write!(f, "{t} finished"),
            Progress::LifetimeWaiting { wait } => {
                write!(f, "binding opened; checking it after {wait:.1?} idle")
            }
            Progress::LifetimeTrial { wait, alive: true } => {
                write!(f, "binding still alive after {wait:.1?} idle")
            }
            Progress::LifetimeTrial { wait, alive: false } => {
                write!(f, "binding gone after {wait:.1?} idle")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_read_well() {
        assert_eq!(
            Progress::Started(Test::Filtering).to_string(),
            "filtering tests started"
        );
        assert_eq!(
            Progress::LifetimeTrial {
                wait: Duration::from_secs(16),
                alive: true
            }
            .to_string(),
            "binding still alive after 16.0s idle"
        );
    }
}
