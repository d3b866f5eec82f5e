//! `[tls]`: the certificate and key of every TLS listener, and STUN and TURN over TLS.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[tls]`: STUN and TURN over TLS (RFC 8489 §6.2.3, RFC 8656 §3.1), served with TURN.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `address:port`s to accept TLS on (coturn's 5349); none by default.
    pub listen: Vec<SocketAddr>,
    /// The certificate chain, PEM.
    pub cert: Option<std::path::PathBuf>,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<std::path::PathBuf>,
}

impl Config {
    pub(super) fn validate_tls(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let stun = &self.stun;
        if !self.tls.listen.is_empty() {
            if self.tls.cert.is_none() || self.tls.key.is_none() {
                return Err(invalid(
                    "tls.cert",
                    "tls.listen is set: tls.cert and tls.key (PEM files) are needed".into(),
                ));
            }
            if !self.turn.enabled.wanted() {
                return Err(invalid(
                    "tls.listen",
                    "TLS is served with TURN: set turn.enabled = true".into(),
                ));
            }
            if let Some(a) = self.tls.listen.iter().find(|a| stun.listen.contains(a)) {
                return Err(invalid(
                    "tls.listen",
                    format!("{a} is also a stun.listen address (TCP): use another port, e.g. 5349"),
                ));
            }
        }
        Ok(())
    }
}
