//! Runtime utilities every other part may use and that use none of them: the clock, seeds and
//! keys, locks, log lines that are written once, and values published to every worker.

pub mod clock;
pub mod lock;
pub mod log_once;
pub mod seed;
pub mod versioned;
