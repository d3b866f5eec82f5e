//! `[log]`: the level or filter of the log.

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; or a full `tracing` filter directive.
    /// The `RUST_LOG` environment variable overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A plain level, or a `tracing` filter with at least one `target=level` directive (a bare word
/// would silently be taken as a target name and log nothing).
fn valid_log_level(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let s = s.trim();
    if LEVELS.contains(&s.to_ascii_lowercase().as_str()) {
        return true;
    }
    s.split(',').all(|d| {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
    }) && tracing_subscriber::EnvFilter::try_new(s).is_ok()
}

impl Config {
    pub(super) fn validate_log(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        if !valid_log_level(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?}: expected error, warn, info, debug or trace",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}
