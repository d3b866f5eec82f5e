//! The TLS client side: the connections SIP opens to a phone's TLS Contact when the phone's
//! own connection is gone (RFC 3261 §18.1.1, §26.3.1), and the admin commands' connection to
//! the server's HTTPS API (its configured certificate pinned).
//!
//! The rule (`sip.tls_verify`, `sip.tls_ca`): by default the phone's certificate must chain to
//! a CA of the bundle (the system's, unless `sip.tls_ca` names one) and name the Contact's
//! address (an IP address SAN: Farside dials only address Contacts). With the check off, any
//! certificate is taken, as phones with self-signed certificates need; the handshake's
//! signatures are still checked, so the connection is encrypted to whoever holds that key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Where distributions keep the system's CA bundle (Debian and Ubuntu, Fedora and RHEL,
/// openSUSE, Alpine), tried in order when `sip.tls_ca` is not set.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How a dialled phone's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the CAs of this PEM bundle, for the Contact's address.
    Ca(PathBuf),
    /// Not at all (signatures of the handshake only).
    Off,
    /// Exactly this certificate (the admin API's `tls.cert`), whatever its name or issuer.
    Pinned(CertificateDer<'static>),
}

/// The system's CA bundle, if one is where distributions keep it.
pub fn system_bundle() -> Option<PathBuf> {
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The client configuration for dialling phones, checking as `verify` says.
pub fn config(verify: &Verify) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let accept = |pinned| {
        Arc::new(Accepting {
            algorithms: provider.signature_verification_algorithms,
            pinned,
        })
    };
    let config = match verify {
        Verify::Ca(bundle) => builder
            .with_root_certificates(roots(bundle)?)
            .with_no_client_auth(),
        Verify::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(accept(None))
            .with_no_client_auth(),
        Verify::Pinned(cert) => builder
            .dangerous()
            .with_custom_certificate_verifier(accept(Some(cert.clone())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The CAs of a PEM bundle; an error if it cannot be read or holds none.
fn roots(bundle: &Path) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject as _;
    let certs = CertificateDer::pem_file_iter(bundle)
        .with_context(|| format!("S307 sip.tls_ca {}", bundle.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("S307 sip.tls_ca {}: not PEM certificates", bundle.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        anyhow::bail!(
            "S307 sip.tls_ca {}: no CA certificate in it",
            bundle.display()
        );
    }
    Ok(roots)
}

/// A certificate check of our own: any certificate (`sip.tls_verify = false`), or only the
/// pinned one; either way the handshake's signatures are checked as usual.
#[derive(Debug)]
struct Accepting {
    algorithms: WebPkiSupportedAlgorithms,
    pinned: Option<CertificateDer<'static>>,
}

impl ServerCertVerifier for Accepting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(pinned) if pinned.as_ref() != end_entity.as_ref() => Err(rustls::Error::General(
                "the server's certificate is not the pinned one".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_with_its_key() {
        let dir = std::env::temp_dir().join(format!("farside-tls-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = config(&Verify::Ca(empty)).unwrap_err();
        assert!(format!("{e:#}").contains("S307 sip.tls_ca"), "{e:#}");
        let missing = config(&Verify::Ca(dir.join("missing.pem"))).unwrap_err();
        assert!(
            format!("{missing:#}").contains("S307 sip.tls_ca"),
            "{missing:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_system_bundle_loads_where_there_is_one() {
        let Some(bundle) = system_bundle() else {
            eprintln!("SKIP the_system_bundle_loads_where_there_is_one: no system CA bundle here");
            return;
        };
        assert!(config(&Verify::Ca(bundle)).is_ok());
        assert!(config(&Verify::Off).is_ok());
    }
}
