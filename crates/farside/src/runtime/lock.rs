//! Locking the control-plane's shared tables.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, even if a thread panicked while holding it: every table behind these locks is
/// updated by single inserts and removals, so a poisoned one is still consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
