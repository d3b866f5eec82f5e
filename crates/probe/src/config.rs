//! What the probe is asked to do.

use std::net::SocketAddr;
use std::time::Duration;

/// The probe's settings. [`Default`] gives RFC 8489's retransmission defaults, every RFC 5780
/// test but the binding lifetime, and a placeholder server the shell replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The server's primary address, already resolved by the shell.
    pub server: SocketAddr,
    /// The first retransmission timeout (RFC 8489 §6.2.1: 500 ms). It doubles after each
    /// send; see [`crate::transaction`].
    pub rto: Duration,
    /// Retransmissions of each request: at most `retransmits + 1` sends (RFC 8489's Rc − 1: 6).
    pub retransmits: u32,
    /// Run the mapping tests (RFC 5780 §4.3).
    pub mapping: bool,
    /// Run the filtering tests (RFC 5780 §4.4).
    pub filtering: bool,
    /// Run the hairpinning test (RFC 5780 §4.5).
    pub hairpinning: bool,
    /// Measure the binding lifetime (RFC 5780 §4.6); off by default as it takes minutes.
    pub lifetime: Option<LifetimeConfig>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            server: SocketAddr::from(([0, 0, 0, 0], 3478)),
            rto: Duration::from_millis(500),
            retransmits: 6,
            mapping: true,
            filtering: true,
            hairpinning: true,
            lifetime: None,
        }
    }
}

/// The binding lifetime search (RFC 5780 §4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeConfig {
    /// The longest idle time tried, e.g. 300 s.
    pub max: Duration,
    /// The search stops once the lifetime is known within this, e.g. 2 s.
    pub resolution: Duration,
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        LifetimeConfig {
            max: Duration::from_secs(300),
            resolution: Duration::from_secs(2),
        }
    }
}

/// A setting the probe cannot work with as given. [`crate::Probe::new`] never fails: it
/// raises a zero `rto` or `resolution` to 1 ms and `max` to at least `resolution`; the shell
/// may call [`ProbeConfig::validate`] first to refuse such input instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The server address is unspecified (0.0.0.0 or ::) or has port 0.
    #[error("the server address {0} is not one a datagram can be sent to")]
    BadServer(SocketAddr),
    /// The local address and the server's are of different families.
    #[error("local address {local} and server {server} are not of the same IP family")]
    FamilyMismatch {
        /// Socket 0's address.
        local: SocketAddr,
        /// The server's.
        server: SocketAddr,
    },
    /// The retransmission timeout is zero.
    #[error("the retransmission timeout must be above zero")]
    ZeroRto,
    /// The lifetime resolution is zero or larger than the maximum.
    #[error("the lifetime resolution must be above zero and at most the maximum")]
    BadLifetime,
}

impl ProbeConfig {
    /// Checks the settings against socket 0's address `local`.
    pub fn validate(&self, local: SocketAddr) -> Result<(), ConfigError> {
        if self.server.ip().is_unspecified() || self.server.port() == 0 {
            return Err(ConfigError::BadServer(self.server));
        }
        if local.is_ipv4() != self.server.is_ipv4() {
            return Err(ConfigError::FamilyMismatch {
                local,
                server: self.server,
            });
        }
        if self.rto.is_zero() {
            return Err(ConfigError::ZeroRto);
        }
        if let Some(l) = self.lifetime
            && (l.resolution.is_zero() || l.resolution > l.max)
        {
            return Err(ConfigError::BadLifetime);
        }
        Ok(())
    }

    /// The settings with zero durations raised so that no timer can spin.
    pub(crate) fn normalised(mut self) -> Self {
        const MIN: Duration = Duration::from_millis(1);
        self.rto = self.rto.max(MIN);
        if let Some(l) = &mut self.lifetime {
            l.resolution = l.resolution.max(MIN);
            l.max = l.max.max(l.resolution);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_rfc_8489() {
        let c = ProbeConfig::default();
        assert_eq!(c.rto, Duration::from_millis(500));
        assert_eq!(c.retransmits + 1, 7);
        assert!(c.mapping && c.filtering && c.hairpinning);
        assert_eq!(c.lifetime, None);
    }

    #[test]
    fn validate_refuses_what_cannot_work() {
        let local: SocketAddr = "192.0.2.10:5000".parse().expect("addr");
        let mut c = ProbeConfig::default();
        assert_eq!(c.validate(local), Err(ConfigError::BadServer(c.server)));
        c.server = "192.0.2.1:3478".parse().expect("addr");
        assert_eq!(c.validate(local), Ok(()));
        let v6: SocketAddr = "[2001:db8::1]:5000".parse().expect("addr");
        assert!(matches!(
            c.validate(v6),
            Err(ConfigError::FamilyMismatch { .. })
        ));
        c.rto = Duration::ZERO;
        assert_eq!(c.validate(local), Err(ConfigError::ZeroRto));
        c.rto = Duration::from_millis(100);
        c.lifetime = Some(LifetimeConfig {
            max: Duration::from_secs(1),
            resolution: Duration::from_secs(2),
        });
        assert_eq!(c.validate(local), Err(ConfigError::BadLifetime));
        let n = c.normalised();
        assert_eq!(n.lifetime.map(|l| l.max), Some(Duration::from_secs(2)));
    }
}
