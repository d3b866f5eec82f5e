//! `SIGHUP`: the configuration file read again while everything keeps running. One job, one
//! failure rule:
//!
//! - A file that does not load (unreadable, bad TOML, a value that cannot work) is refused as a
//!   whole and logged with its line (S007); the running configuration stays, untouched.
//! - From a valid file, `log.level` applies at once (unless `RUST_LOG` overrides it, as at
//!   start), and so do the live keys of `config/live.rs` (TURN's and the registrar's limits,
//!   lifetimes, peer policy, keep-alives): workers take them between packets; allocations,
//!   registrations and calls stay. Every other section that changed is named in the log as
//!   taking effect at the next restart (S006): listeners and addresses are built once.
//! - Users and shared secrets are not in the file: they live in the store and every running
//!   server picks their changes up by itself within a second (S306), as it does new TLS
//!   certificates (S309, `net/tls_reload.rs`).

use std::path::PathBuf;

use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::Config;

/// The handle through which the log filter is replaced.
pub type LogFilter = reload::Handle<EnvFilter, Registry>;

/// What one reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Keys applied at once.
    pub applied: Vec<&'static str>,
    /// Sections that changed and apply at the next restart.
    pub restart: Vec<&'static str>,
}

/// What a reload compares against and changes.
pub struct Reload {
    /// The file the server started with (`None`: the embedded defaults, nothing to read).
    pub path: Option<PathBuf>,
    /// The configuration running now.
    pub running: Config,
    /// The log filter, if logging was set up with one.
    pub log: Option<LogFilter>,
    /// Where live keys go, filled in by the start as parts come up.
    pub live: Live,
}

/// The running parts a reload hands live keys to.
#[derive(Default)]
pub struct Live {
    /// TURN's workers' settings, quotas and port pool.
    pub turn: Option<std::sync::Arc<crate::dataplane::turn::TurnShared>>,
    /// The SIP server's registrar and keep-alive settings.
    pub sip: Option<std::sync::Arc<crate::runtime::versioned::Versioned<crate::sip::SipSettings>>>,
    /// The dashboard's log ring.
    pub log: Option<std::sync::Arc<crate::telemetry::log_ring::LogRing>>,
    /// The per-source tables.
    pub sources: Option<std::sync::Arc<crate::telemetry::sources::Sources>>,
}

impl Reload {
    /// Reads the file again and applies what can change live (see the module's rule); the
    /// error says why the file was refused.
    pub fn apply(&mut self) -> Result<Outcome, String> {
        let Some(path) = &self.path else {
            tracing::info!(
                "S006 reload: nothing to reload (started on the embedded defaults, without --config)"
            );
            return Ok(Outcome::default());
        };
        let new = match Config::load_settled(Some(path)) {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::warn!("S007 reload refused, the running configuration stays: {e}");
                return Err(e.to_string());
            }
        };
        let mut applied = Vec::new();
        if new.log.level != self.running.log.level {
            if std::env::var_os("RUST_LOG").is_some() {
                tracing::info!("S006 log.level changed, but RUST_LOG overrides it");
            } else if let Some(handle) = &self.log {
                match EnvFilter::try_new(&new.log.level).map(|f| handle.reload(f)) {
                    Ok(Ok(())) => {
                        applied.push("log.level");
                        self.running.log = new.log.clone();
                        tracing::debug!("S006 log level now {}", self.running.log.level);
                    }
                    Ok(Err(e)) => tracing::warn!("S007 log.level not applied: {e}"),
                    Err(e) => tracing::warn!("S007 log.level not applied: {e}"),
                }
            }
        }
        let live = crate::config::live::adopt(&mut self.running, &new);
        self.hand_over(&live);
        applied.extend(live);
        let (old, newer) = (&self.running, &new);
        let restart: Vec<&'static str> = [
            ("[stun]", old.stun != newer.stun),
            ("[turn]", old.turn != newer.turn),
            ("[sip]", old.sip != newer.sip),
            ("[rtp]", old.rtp != newer.rtp),
            ("[tls]", old.tls != newer.tls),
            ("[store]", old.store != newer.store),
            ("[admin]", old.admin != newer.admin),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        let list = |v: &[&str]| v.join(", ");
        match (applied.is_empty(), restart.is_empty()) {
            (true, true) => tracing::info!("S006 reloaded {}: nothing changed", path.display()),
            (false, true) => tracing::info!(
                "S006 reloaded {}: applied {}",
                path.display(),
                list(&applied)
            ),
            (true, false) => tracing::info!(
                "S006 reloaded {}: {} changed, applies at the next restart",
                path.display(),
                list(&restart)
            ),
            (false, false) => tracing::info!(
                "S006 reloaded {}: applied {}; {} changed, applies at the next restart",
                path.display(),
                list(&applied),
                list(&restart)
            ),
        }
        Ok(Outcome { applied, restart })
    }

    /// Gives the running parts the live keys just adopted (`changed` names them).
    fn hand_over(&self, changed: &[&'static str]) {
        use crate::config::live::touches;
        let r = &self.running;
        if let Some(t) = self.live.turn.as_ref().filter(|_| touches(changed, "turn")) {
            let mut core = r.turn.core(r.stun.software.clone());
            core.peer_policy = r.with_own_addresses(core.peer_policy);
            t.drain.apply(&mut core);
            t.settings.publish(core);
            t.quotas.set_limits(
                r.turn.max_allocations_per_user,
                r.turn.auth_failures_per_minute,
                r.turn.refusals_per_second,
            );
            t.pool.set_max(r.turn.max_allocations);
        }
        if let Some(s) = self.live.sip.as_ref().filter(|_| touches(changed, "sip")) {
            s.publish(r.sip.settings());
        }
        if let Some(l) = &self.live.log {
            l.set_capacity(r.admin.log_lines);
        }
        if let Some(s) = &self.live.sources {
            s.set_capacity(r.admin.source_table_size);
        }
    }
}
