//! A rustls server configuration from PEM files.

use std::sync::Arc;

use anyhow::Context as _;

/// Loads the certificate chain and key for TLS.
pub fn load(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("S307 tls.cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("S307 tls.cert {}: not PEM certificates", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("S307 tls.cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("S307 tls.key {}: no PEM private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("S307 the TLS certificate and key do not go together")?;
    Ok(Arc::new(config))
}
