//! Draining TURN (`farside drain`): new Allocates are sent to another node with 300 Try
//! Alternate (RFC 8656 §6.2) while the allocations already here run out, so the node can be
//! stopped without cutting a call. The state lives here, apart from the configuration file:
//! a reload keeps it, a restart ends it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use farside_turn::TurnConfig;

use crate::runtime::lock::lock;
use crate::runtime::versioned::Versioned;

/// Where new allocations go while draining; empty when not.
#[derive(Debug)]
pub struct Drain {
    alternates: Mutex<Vec<SocketAddr>>,
    settings: Arc<Versioned<TurnConfig>>,
}

impl Drain {
    /// Not draining; changes go to the workers through `settings`.
    pub fn new(settings: Arc<Versioned<TurnConfig>>) -> Self {
        Drain {
            alternates: Mutex::new(Vec::new()),
            settings,
        }
    }

    /// Starts draining to `alternates` (the first of the client's address family is named),
    /// or stops when it is empty; the workers take it on their next pass.
    pub fn set(&self, alternates: Vec<SocketAddr>) {
        *lock(&self.alternates) = alternates;
        let mut core = (*self.settings.load()).clone();
        self.apply(&mut core);
        self.settings.publish(core);
    }

    /// Where new allocations go; empty when not draining.
    pub fn alternates(&self) -> Vec<SocketAddr> {
        lock(&self.alternates).clone()
    }

    /// Puts the drain into settings about to be published (a reload's).
    pub fn apply(&self, core: &mut TurnConfig) {
        core.alternate_servers = self.alternates();
    }
}
