//! The last log messages, numbered, in memory: what the dashboard's log page and
//! `GET /api/v1/log` show (the snom server kept such a list). A `tracing` layer beside the one
//! that writes standard error; it keeps what passes the log filter, at most `capacity`
//! messages, dropping the oldest.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::runtime::lock::lock;

/// One message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Its number since start, from 1.
    pub seq: u64,
    /// Unix milliseconds.
    pub unix_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    /// The message (with its code, `S001 ...`).
    pub message: String,
}

/// The ring.
#[derive(Debug)]
pub struct LogRing {
    capacity: std::sync::atomic::AtomicUsize,
    entries: Mutex<(u64, VecDeque<Entry>)>,
}

impl LogRing {
    /// A ring of `capacity` messages (at least one).
    pub fn new(capacity: usize) -> LogRing {
        LogRing {
            capacity: capacity.max(1).into(),
            entries: Mutex::new((0, VecDeque::new())),
        }
    }

    /// Keeps `capacity` messages from now on (a reload); the oldest go if it shrank.
    pub fn set_capacity(&self, capacity: usize) {
        let capacity = capacity.max(1);
        self.capacity
            .store(capacity, std::sync::atomic::Ordering::Relaxed);
        let mut g = lock(&self.entries);
        while g.1.len() > capacity {
            g.1.pop_front();
        }
    }

    /// The messages kept, oldest first, of `min` level or more severe.
    pub fn entries(&self, min: Level) -> Vec<Entry> {
        lock(&self.entries)
            .1
            .iter()
            .filter(|e| level_of(e.level) <= min)
            .cloned()
            .collect()
    }

    fn push(&self, level: &'static str, message: String) {
        let mut g = lock(&self.entries);
        g.0 += 1;
        let seq = g.0;
        if g.1.len() >= self.capacity.load(std::sync::atomic::Ordering::Relaxed) {
            g.1.pop_front();
        }
        g.1.push_back(Entry {
            seq,
            unix_ms: crate::runtime::clock::now().unix_millis(),
            level,
            message,
        });
    }
}

/// `"warn"` and the like to a level (unknown: INFO).
pub fn parse_level(s: &str) -> Level {
    s.parse().unwrap_or(Level::INFO)
}

fn level_of(name: &str) -> Level {
    name.parse().unwrap_or(Level::TRACE)
}

/// The layer that fills a ring.
pub struct RingLayer(pub std::sync::Arc<LogRing>);

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.push(event.metadata().level().as_str(), text.0);
    }
}

/// The message and any other fields, as `fmt` writes them.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_messages_numbered_and_filters_by_level() {
        let ring = LogRing::new(3);
        for (i, level) in ["INFO", "WARN", "DEBUG", "ERROR"].iter().enumerate() {
            ring.push(level, format!("m{i}"));
        }
        let all = ring.entries(Level::TRACE);
        assert_eq!(
            all.iter()
                .map(|e| (e.seq, e.message.as_str()))
                .collect::<Vec<_>>(),
            [(2, "m1"), (3, "m2"), (4, "m3")]
        );
        let warn: Vec<u64> = ring.entries(Level::WARN).iter().map(|e| e.seq).collect();
        assert_eq!(warn, [2, 4]);
        // A reload that shrinks it drops the oldest at once.
        ring.set_capacity(1);
        let left: Vec<u64> = ring.entries(Level::TRACE).iter().map(|e| e.seq).collect();
        assert_eq!(left, [4]);
    }
}
