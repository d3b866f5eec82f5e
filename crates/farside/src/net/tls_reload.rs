//! The TLS certificate and key, loaded again when their files change: a renewed certificate
//! (certbot, an ACME client, a hand copy) is served to new connections without a restart;
//! connections already open keep the one they began with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use farside_time::Timestamp;

/// How often the files are looked at (two `stat` calls).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Modification time and length of the certificate and key files.
type Stamp = Option<[(SystemTime, u64); 2]>;

/// The TLS server configuration and the files it came from.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    stamp: Stamp,
    config: Arc<rustls::ServerConfig>,
    checked: Timestamp,
}

impl TlsFiles {
    /// Loads `cert` and `key` (PEM); fails as the start would.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<TlsFiles> {
        let stamp = stamp(cert, key);
        Ok(TlsFiles {
            config: crate::net::tls_config::load(cert, key)?,
            cert: cert.to_owned(),
            key: key.to_owned(),
            stamp,
            checked: crate::runtime::clock::now(),
        })
    }

    /// The configuration for new connections.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// Every few seconds: if either file changed, loads the pair again. A pair that does not
    /// load (a half-written renewal, a key that does not match) leaves the old one in use and is
    /// logged once; the next change is tried again.
    pub fn refresh(&mut self, now: Timestamp) {
        if now.duration_since(self.checked) < CHECK_EVERY {
            return;
        }
        self.checked = now;
        let stamp = stamp(&self.cert, &self.key);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match crate::net::tls_config::load(&self.cert, &self.key) {
            Ok(config) => {
                self.config = config;
                tracing::info!(
                    "S309 TLS certificate {} reloaded: new connections get it",
                    self.cert.display()
                );
            }
            Err(e) => tracing::warn!(
                "S310 the changed TLS certificate or key does not load, the previous one stays in use: {e:#}"
            ),
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(cert)?, one(key)?])
}
