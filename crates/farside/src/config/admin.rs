//! `[admin]`: the HTTP endpoint for metrics and health.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where to serve `GET /metrics` (Prometheus) and `GET /health`; `"off"` disables it.
    pub listen: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some("127.0.0.1:9478".into()),
        }
    }
}

impl AdminConfig {
    /// The parsed listen address, or `None` when disabled (validated by [`Config::validate`]).
    pub fn address(&self) -> Option<SocketAddr> {
        match self.listen.as_deref() {
            None | Some("off") | Some("") => None,
            Some(s) => s.parse().ok(),
        }
    }
}

impl Config {
    pub(super) fn validate_admin(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        if let Some(s) = self.admin.listen.as_deref()
            && !matches!(s, "off" | "")
            && s.parse::<SocketAddr>().is_err()
        {
            return Err(invalid(
                "admin.listen",
                format!("{s:?}: expected address:port or \"off\""),
            ));
        }
        Ok(())
    }
}
