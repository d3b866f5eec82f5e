//! `[admin]`: the HTTP endpoint for metrics, health and the JSON API.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where to serve `GET /metrics` (Prometheus), `GET /health` and the API (`/api/v1/`);
    /// `"off"` disables it.
    pub listen: Option<String>,
    /// The API's bearer token file; default: `admin.token` beside an SQLite store.
    pub token_file: Option<std::path::PathBuf>,
    /// Log messages kept in memory for the dashboard's log page (1 to 100000).
    pub log_lines: usize,
    /// Addresses each data-plane worker keeps in the per-source table (2 to 1000000).
    pub source_table_size: usize,
    /// Serve HTTPS with the `[tls]` certificate and key instead of plain HTTP.
    pub tls: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some("127.0.0.1:9478".into()),
            token_file: None,
            log_lines: 1000,
            source_table_size: 1000,
            tls: false,
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
        if self.admin.tls && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(invalid(
                "admin.tls",
                "HTTPS needs [tls] cert and key (PEM files)".into(),
            ));
        }
        if !(2..=1_000_000).contains(&self.admin.source_table_size) {
            return Err(invalid("admin.source_table_size", "2 to 1000000".into()));
        }
        if !(1..=100_000).contains(&self.admin.log_lines) {
            return Err(invalid("admin.log_lines", "1 to 100000".into()));
        }
        Ok(())
    }
}
