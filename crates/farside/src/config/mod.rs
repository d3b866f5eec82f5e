//! The configuration file: one TOML document, every key optional, safe defaults embedded. One
//! module per section; each checks its own keys (and those it depends on) in
//! [`Config::validate`], so a file that loads can run.
//!
//! Every key is documented in `docs/configuration.md`; keep the two in step.

mod admin;
pub mod host;
pub mod live;
mod log;
mod own;
pub mod rtp;
pub mod sip;
mod store;
mod stun;
mod tls;
mod turn;
pub mod values;

use std::path::Path;

use serde::Deserialize;

pub use admin::AdminConfig;
pub use log::LogConfig;
pub use rtp::RtpConfig;
pub use sip::SipConfig;
pub use store::{StoreConfig, default_data_dir};
pub use stun::StunConfig;
pub use tls::TlsConfig;
pub use turn::TurnConfigFile;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[stun]`: the STUN server.
    pub stun: StunConfig,
    /// `[turn]`: the TURN relay.
    pub turn: TurnConfigFile,
    /// `[store]`: where users and secrets live.
    pub store: StoreConfig,
    /// `[tls]`: STUN and TURN over TLS.
    pub tls: TlsConfig,
    /// `[sip]`: the SIP registrar.
    pub sip: SipConfig,
    /// `[rtp]`: the RTP relay.
    pub rtp: RtpConfig,
    /// `[admin]`: the HTTP endpoint for metrics and health.
    pub admin: AdminConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
}

/// A configuration problem, rendered as one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or a value of the wrong type.
    #[error("{path}:{line}: {key}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The dotted key, as well as it could be told.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{path}{}: {key}: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the key (of its table, if the key is missing), when in a file.
        line: Option<usize>,
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// The file at `path` (or, without one, the embedded defaults), loaded and settled on this
    /// host ([`host`]): what `serve` runs and the CLI's commands act on.
    pub fn load_settled(path: Option<&Path>) -> Result<(Config, host::Notices), ConfigError> {
        let (config, origin) = match path {
            Some(p) => (Self::load(p)?, p.display().to_string()),
            None => (Config::default(), "(defaults)".to_string()),
        };
        let text = path.and_then(|p| std::fs::read_to_string(p).ok());
        config
            .settle(&host::Host::detect(), &origin)
            .map_err(|e| match (e, &text) {
                (
                    ConfigError::Invalid {
                        path, key, message, ..
                    },
                    Some(t),
                ) => ConfigError::Invalid {
                    line: line_of(t, key),
                    path,
                    key,
                    message,
                },
                (e, _) => e,
            })
    }

    /// Parses and validates a TOML document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start).min(text.len());
            let (line, key) = locate(text, start);
            ConfigError::Parse {
                path: origin.to_string(),
                line,
                key,
                // toml's messages end in a newline and sometimes span lines; keep one line.
                message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
            }
        })?;
        config.validate(origin).map_err(|e| match e {
            ConfigError::Invalid {
                path, key, message, ..
            } => ConfigError::Invalid {
                line: line_of(text, key),
                path,
                key,
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// The realms a user is added to when none is named: TURN's and, when the registrar runs,
    /// its own (a user's long-term key is per realm: one password, a key for each). An edge
    /// leaves authentication to the registrar behind it.
    pub fn user_realms(&self) -> Vec<String> {
        let mut all = vec![self.turn.realm.clone()];
        let sip = self.sip.realm();
        let registrar = self.sip.mode == sip::Mode::Registrar;
        if self.sip.enabled.wanted() && registrar && sip != self.turn.realm {
            all.push(sip.to_owned());
        }
        all
    }

    /// Checks what the types cannot, section by section.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate_stun(origin)?;
        self.validate_turn(origin)?;
        self.validate_sip(origin)?;
        self.validate_rtp(origin)?;
        self.validate_tls(origin)?;
        self.validate_store(origin)?;
        self.validate_admin(origin)?;
        self.validate_log(origin)
    }
}

/// The threads a `workers` key asks for: itself, or with 0 one per CPU this process may run on
/// (its affinity: `taskset -c 0` gives one).
pub fn worker_threads(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A value that parses but cannot work, named by its key (its line is found by `parse`).
fn invalid(origin: &str, key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: origin.to_string(),
        line: None,
        key,
        message,
    }
}

/// The line of dotted `key` in a TOML document: where it is set, else where its table starts
/// (where it is missing), else `None`.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let (table, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    let mut header = None;
    for (i, l) in text.lines().enumerate() {
        // A comment may follow a header or a value; a key is before both.
        let t = l.split('#').next().unwrap_or("").trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if current == table {
                header.get_or_insert(i + 1);
            }
        } else if current == table && t.split_once('=').is_some_and(|(k, _)| k.trim() == name) {
            return Some(i + 1);
        }
    }
    header
}

/// The line number and the dotted key at byte `offset` of a TOML document.
fn locate(text: &str, offset: usize) -> (usize, String) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let mut table = String::new();
    for l in before.lines() {
        let t = l.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
    let key = if line_text.starts_with('[') {
        line_text
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string()
    } else {
        let k = line_text.split('=').next().unwrap_or("").trim();
        match (table.is_empty(), k.is_empty()) {
            (_, true) => table,
            (true, false) => k.to_string(),
            (false, false) => format!("{table}.{k}"),
        }
    };
    (
        line,
        if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "f.toml")
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn no_file_means_dual_stack_3478_with_tcp() {
        let c = Config::parse("", "f.toml").expect("empty config is valid");
        assert_eq!(c.stun.listen.len(), 2);
        assert!(c.stun.listen.iter().all(|a| a.port() == 3478));
        assert!(c.stun.tcp);
        assert!(c.stun.software.is_none());
        assert!(c.stun.alternate_address.is_none());
    }

    #[test]
    fn documented_rfc5780_keys_work() {
        let c = Config::parse(
            "[stun]\nlisten = [\"127.0.0.1:3478\"]\nalternate_address = \"127.0.0.2\"\nalternate_port = 3479\n",
            "f.toml",
        )
        .expect("valid");
        let p = c.stun.rfc5780_primary().expect("paired");
        assert_eq!(p, "127.0.0.1:3478".parse().expect("addr"));
        assert_eq!(c.stun.rfc5780_alternate_port(p), 3479);
    }

    #[test]
    fn alternate_port_defaults_to_primary_plus_one() {
        let c = Config::parse(
            "[stun]\nlisten = [\"127.0.0.1:4000\"]\nalternate_address = \"127.0.0.2\"\n",
            "f.toml",
        )
        .expect("valid");
        let p = c.stun.rfc5780_primary().expect("paired");
        assert_eq!(c.stun.rfc5780_alternate_port(p), 4001);
    }

    #[test]
    fn errors_name_the_key_on_one_line() {
        let e = err("[stun]\nlisten = [\"nonsense\"]\n");
        assert!(e.starts_with("f.toml:2: stun.listen: "), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = err("[stun]\nlsten = []\n");
        assert!(e.starts_with("f.toml:2: stun.lsten: unknown field"), "{e}");

        let e = err("[stun]\nlisten = [\"0.0.0.0:3478\"]\nalternate_address = \"127.0.0.2\"\n");
        assert!(e.starts_with("f.toml:3: stun.alternate_address: "), "{e}");

        let e = err("[stun]\nlisten = []\n");
        assert_eq!(e, "f.toml:2: stun.listen: needs at least one address:port");

        let e = err("[admin]\nlisten = \"x\"\n");
        assert!(e.starts_with("f.toml:2: admin.listen: "), "{e}");

        let e = err("[log]\nlevel = \"loud\"\n");
        assert!(e.starts_with("f.toml:2: log.level: "), "{e}");
        Config::parse("[log]\nlevel = \"info,farside=debug\"\n", "f.toml")
            .expect("directives are valid");

        let partner = "[stun]\nlisten = [\"192.0.2.1:3478\"]\npartners = [\"198.51.100.2\"]\n";
        let e = err(partner);
        // Missing: the line of its table, where it belongs.
        assert!(e.starts_with("f.toml:1: stun.partner_secrets: "), "{e}");
        let e = err(&format!("{partner}partner_secrets = [\"short\"]\n"));
        assert!(e.contains("at least 16 bytes"), "{e}");
        let e = err(
            "[stun]\nlisten = [\"0.0.0.0:3478\"]\npartners = [\"198.51.100.2\"]\npartner_secrets = [\"0123456789abcdef\"]\n",
        );
        assert!(e.starts_with("f.toml:3: stun.partners: "), "{e}");
        let e = err(
            "[stun]\nlisten = [\"192.0.2.1:3478\"]\npartners = [\"192.0.2.1\"]\npartner_secrets = [\"0123456789abcdef\"]\n",
        );
        assert!(e.contains("another host"), "{e}");
        let c = Config::parse(
            &format!("{partner}partner_secrets = [\"0123456789abcdef\"]\n"),
            "f.toml",
        )
        .expect("valid partner mode");
        assert_eq!(c.stun.partner_max_age, 10);

        let e = err("[bogus]\n");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn the_rtp_relay_is_left_to_the_host_by_default_and_needs_a_specific_address() {
        let c = Config::parse("", "f.toml").expect("valid");
        assert_eq!(c.rtp.enabled, values::Switch::Auto);
        assert!(
            c.rtp.address.is_empty(),
            "the host's to fill (config::host)"
        );
        assert_eq!(
            c.rtp.ng_listen[0].0,
            "127.0.0.1:2223".parse().expect("addr")
        );
        assert_eq!((c.rtp.ports.0, c.rtp.ports.1), (30_000, 39_999));
        assert!(err("[rtp]\nenabled = true\naddress = [\"0.0.0.0\"]\n").contains("rtp.address"));
        assert!(err("[rtp]\nports = \"40000-30000\"\n").contains("rtp.ports"));
        // A range TURN takes may still be short of what RTP needs: pairs from 1024.
        assert!(err("[rtp]\nports = \"1000-2000\"\n").contains("rtp.ports"));
        assert!(err("[rtp]\nports = \"30000-30000\"\n").contains("rtp.ports"));
        assert!(err("[turn]\nrelay_ports = \"50000-4\"\n").contains("turn.relay_ports"));
        assert!(err("[turn]\ndenied_peers = [\"10.0.0.0/40\"]\n").contains("turn.denied_peers"));
        assert!(err("[rtp]\nng_listen = [\"tcp:127.0.0.1:1\"]\n").contains("rtp.ng_listen"));
        // Farside's own calls: relayed when NATed by default, and only while the relay runs.
        assert_eq!(c.rtp.relay, super::rtp::Relay::Nated);
        assert_eq!(c.rtp.policy(), farside_sip::media::RelayPolicy::Never);
        assert!(err("[rtp]\nrelay = \"sometimes\"\n").contains("relay"));
        let on = Config::parse(
            "[rtp]\nenabled = true\naddress = [\"192.0.2.1\"]\nrelay = \"always\"\nng_listen = []\n",
            "f.toml",
        )
        .expect("valid");
        assert_eq!(on.rtp.policy(), farside_sip::media::RelayPolicy::Always);
        // Media endpoints: what is not global is refused unless listed; ranges must parse.
        let p = on.rtp.peer_policy();
        assert!(!p.permits("127.0.0.1".parse().expect("ip")));
        assert!(err("[rtp]\nallowed_peers = [\"300.1.2.3\"]\n").contains("rtp.allowed_peers"));
        // TURN's relay ports and the RTP relay's, on one address, must not overlap.
        let both = |rtp_ports: &str| {
            format!(
                "[stun]\nlisten = [\"192.0.2.1:3478\"]\n[turn]\nenabled = true\nauth_secrets = [\"0123456789abcdef0123\"]\nrelay_ports = \"40000-49999\"\n[rtp]\nenabled = true\naddress = [\"192.0.2.1\"]\nports = \"{rtp_ports}\"\n"
            )
        };
        assert!(Config::parse(&both("30000-39999"), "f.toml").is_ok());
        assert!(err(&both("39000-40999")).contains("overlaps turn.relay_ports"));
        // On each of the relay's addresses, not only the first.
        let second = both("30000-39999").replace(
            "address = [\"192.0.2.1\"]\nports = \"30000-39999\"",
            "address = [\"2001:db8::1\", \"192.0.2.1\"]\nports = \"39000-40999\"",
        );
        assert!(err(&second).contains("overlaps turn.relay_ports"));
        // The relay's limits, converted once.
        let limits = Config::parse(
            "[rtp]\nenabled = true\naddress = [\"192.0.2.1\"]\nmax_calls = 50\nsilence_timeout = 20\n",
            "f.toml",
        )
        .expect("valid")
        .rtp
        .relay_config()
        .expect("relay config");
        assert_eq!(limits.max_calls, 50);
        assert_eq!(limits.silence_timeout, std::time::Duration::from_secs(20));
        assert_eq!(
            limits.final_timeout,
            std::time::Duration::from_secs(4 * 3600)
        );
        assert!(err("[rtp]\nsetup_timeout = 0\n").contains("rtp.setup_timeout"));
        assert!(err("[rtp]\nworkers = 5000\n").contains("rtp.workers"));
        // One address per family; the advertised one stands for its family's.
        let dual = Config::parse(
            "[rtp]\nenabled = true\naddress = [\"192.0.2.1\", \"2001:db8::1\"]\nadvertised_address = \"203.0.113.9\"\n",
            "f.toml",
        )
        .expect("valid");
        assert_eq!(
            dual.rtp.advertised(),
            vec![
                "203.0.113.9".parse::<std::net::IpAddr>().expect("ip"),
                "2001:db8::1".parse().expect("ip")
            ]
        );
        assert!(
            err("[rtp]\nenabled = true\naddress = [\"192.0.2.1\", \"192.0.2.2\"]\n")
                .contains("one address per family")
        );
        assert!(
            err("[rtp]\nenabled = true\naddress = [\"192.0.2.1\"]\nadvertised_address = \"2001:db8::9\"\n")
                .contains("rtp.advertised_address")
        );
        let c = Config::parse(
            "[rtp]\nenabled = true\naddress = [\"192.0.2.1\"]\nadvertised_address = \"203.0.113.1\"\nports = \"40000-40999\"\n",
            "f.toml",
        )
        .expect("valid");
        assert_eq!(
            c.rtp.relay_address(),
            Some("192.0.2.1".parse().expect("ip"))
        );
    }

    #[test]
    fn connection_limits_out_of_range_name_their_own_key() {
        let stun = "[stun]\nlisten = [\"127.0.0.1:3478\"]\n";
        for (line, key) in [
            ("tcp_max_connections = 0", "stun.tcp_max_connections"),
            (
                "tcp_max_connections_per_ip = 0",
                "stun.tcp_max_connections_per_ip",
            ),
            (
                "tcp_first_message_timeout = 0",
                "stun.tcp_first_message_timeout",
            ),
            ("tcp_idle_timeout = 0", "stun.tcp_idle_timeout"),
            ("tls_handshake_timeout = 0", "stun.tls_handshake_timeout"),
            ("tcp_max_queued = 131109", "stun.tcp_max_queued"),
        ] {
            let e = err(&format!("{stun}{line}\n"));
            let at = stun.lines().count() + 1;
            assert!(
                e.starts_with(&format!("f.toml:{at}: {key}: ")),
                "{line}: {e}"
            );
        }
        Config::parse(&format!("{stun}tcp_max_queued = 131110\n"), "f.toml")
            .expect("two whole STUN messages fit");
        let sip = "[sip]\nenabled = true\ndomain = \"example.org\"\n";
        for (line, key) in [
            ("max_connections = 0", "sip.max_connections"),
            ("max_connections_per_ip = 0", "sip.max_connections_per_ip"),
            ("first_message_timeout = 0", "sip.first_message_timeout"),
            ("idle_timeout = 0", "sip.idle_timeout"),
            ("tls_handshake_timeout = 0", "sip.tls_handshake_timeout"),
            ("max_queued = 131069", "sip.max_queued"),
        ] {
            let e = err(&format!("{sip}{line}\n"));
            assert!(e.starts_with(&format!("f.toml:4: {key}: ")), "{line}: {e}");
        }
        Config::parse(&format!("{sip}max_queued = 131070\n"), "f.toml")
            .expect("two whole SIP messages fit");
    }

    #[test]
    fn sip_edge_mode_needs_an_upstream_uri() {
        let sip = "[sip]\nenabled = true\ndomain = \"example.org\"\n";
        let e = err(&format!("{sip}mode = \"edge\"\n"));
        assert!(e.starts_with("f.toml:1: sip.upstream: "), "{e}");
        // A comment after the header does not hide the table.
        let e = err(
            "# edge\n[sip]   # in front of the PBX\nenabled = true\ndomain = \"example.org\"\nmode = \"edge\"\n",
        );
        assert!(e.starts_with("f.toml:2: sip.upstream: "), "{e}");
        for bad in ["pbx", "sip:", "sip:a@pbx", "sip:pbx:http", "sip:p b"] {
            let e = err(&format!("{sip}mode = \"edge\"\nupstream = \"{bad}\"\n"));
            assert!(e.starts_with("f.toml:5: sip.upstream: "), "{bad}: {e}");
        }
        let e = err(&format!("{sip}mode = \"b2bua\"\n"));
        assert!(e.starts_with("f.toml:4: sip.mode: "), "{e}");
        for (uri, want) in [
            ("sip:127.0.0.1:5090", ("127.0.0.1", 5090)),
            ("sip:pbx.example.org", ("pbx.example.org", 5060)),
            (
                "sip:pbx.example.org:5070;transport=udp",
                ("pbx.example.org", 5070),
            ),
            ("sip:[2001:db8::1]:5062", ("2001:db8::1", 5062)),
            ("sip:[2001:db8::1]", ("2001:db8::1", 5060)),
        ] {
            let c = Config::parse(
                &format!("{sip}mode = \"edge\"\nupstream = \"{uri}\"\n"),
                "f.toml",
            )
            .expect(uri);
            let u = c.sip.upstream.expect(uri);
            assert_eq!((u.host.as_str(), u.port), want, "{uri}");
        }
    }

    #[test]
    fn sip_values_are_typed_as_they_are_read() {
        let sip = "[sip]\nenabled = true\ndomain = \"example.org\"\n";
        let c = Config::parse(
            &format!(
                "{sip}listen = [\"udp:127.0.0.1:5070\", \"WSS:[::1]:8443\"]\n\
                 digest_algorithms = [\"sha-256\", \"MD5\"]\ncontact_fix = \"alias\"\n\
                 [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
                 [sip.keepalive]\ninterval = \"2m\"\nmethod = \"crlf\"\n"
            ),
            "f.toml",
        )
        .expect("valid");
        let s = &c.sip;
        assert_eq!(s.listen[1].transport, farside_sip::nat::Transport::Wss);
        assert_eq!(s.listen[1].address, "[::1]:8443".parse().expect("addr"));
        assert_eq!(
            s.registrar().algorithms,
            [
                farside_sip::digest::Algorithm::Sha256,
                farside_sip::digest::Algorithm::Md5
            ]
        );
        assert_eq!(
            farside_sip::edge::ContactFix::from(s.contact_fix),
            farside_sip::edge::ContactFix::Alias
        );
        let k = s.keepalive().expect("on by default");
        assert_eq!(k.interval_ms, 120_000);
        assert_eq!(k.method, farside_sip::keepalive::Method::Crlf);
        assert_eq!(k.from, "sip:keepalive@example.org");
        for (bad, key) in [
            ("listen = [\"sctp:127.0.0.1:5060\"]", "sip.listen"),
            ("contact_fix = \"fix\"", "sip.contact_fix"),
            ("digest_algorithms = [\"SHA-512\"]", "sip.digest_algorithms"),
            ("keepalive = { interval = \"0s\" }", "sip.keepalive"),
            ("keepalive = { method = \"PING\" }", "sip.keepalive"),
        ] {
            let e = err(&format!("{sip}{bad}\n"));
            assert!(e.starts_with(&format!("f.toml:4: {key}")), "{bad}: {e}");
        }
        let e = err(&format!("{sip}digest_algorithms = []\n"));
        assert!(e.starts_with("f.toml:4: sip.digest_algorithms: "), "{e}");
    }

    #[test]
    fn store_url_defaults_to_the_data_dir_and_takes_sqlite_or_postgres() {
        let c = Config::parse("", "f.toml").expect("valid");
        assert_eq!(
            c.store.url,
            format!(
                "sqlite://{}",
                store::default_data_dir().join("farside.db").display()
            )
        );
        let c = Config::parse("[store]\nurl = \"sqlite:///tmp/x/users.db\"\n", "f.toml")
            .expect("valid");
        assert_eq!(c.store.url, "sqlite:///tmp/x/users.db");

        let c = Config::parse(
            "[store]\nurl = \"postgres://farside:hunter2@db/farside\"\n",
            "f.toml",
        )
        .expect("PostgreSQL");
        assert_eq!(c.store.url, "postgres://farside:hunter2@db/farside");
        let e = err("[store]\nurl = \"postgres://\"\n");
        assert_eq!(
            e,
            "f.toml:2: store.url: postgres: expected sqlite://PATH or postgres://user:password@host/database"
        );
        let e = err("[store]\nurl = \"sqlite://\"\n");
        assert!(e.starts_with("f.toml:2: store.url: "), "{e}");
        let e = err("[store]\nurl = \"/var/lib/farside/farside.db\"\n");
        assert_eq!(
            e,
            "f.toml:2: store.url: no scheme: expected sqlite://PATH or postgres://user:password@host/database"
        );
        // The password in a database URL must not end up in the message.
        let e = err("[store]\nurl = \"mysql://u:hunter2@db/x\"\n");
        assert_eq!(
            e,
            "f.toml:2: store.url: mysql: expected sqlite://PATH or postgres://user:password@host/database"
        );
        let e = err("[store]\npath = \"x\"\n");
        assert!(e.starts_with("f.toml:2: store.path: unknown field"), "{e}");
    }
}
