//! A value every worker reads and a control thread replaces whole: the store's credentials,
//! the settings a reload changes. A worker asks once per pass whether a newer one was
//! published (one atomic load when none was) and takes it between packets, never mid-way.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::runtime::lock::lock;

/// The current value and its generation.
#[derive(Debug, Default)]
pub struct Versioned<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Versioned<T> {
    /// A cell holding `value` (generation 0).
    pub fn new(value: T) -> Self {
        Versioned {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(value)),
        }
    }

    /// Publishes a new value; readers pick it up on their next pass.
    pub fn publish(&self, value: T) {
        *lock(&self.current) = Arc::new(value);
        self.generation.fetch_add(1, Relaxed);
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        Arc::clone(&lock(&self.current))
    }

    /// The current value if it was published since `seen` (which is updated).
    pub fn newer_than(&self, seen: &mut u64) -> Option<Arc<T>> {
        let g = self.generation.load(Relaxed);
        if g == *seen {
            return None;
        }
        *seen = g;
        Some(self.load())
    }
}
