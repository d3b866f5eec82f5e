//! The keys a running server takes from a reload, and those that wait for a restart.
//!
//! Live: `[turn]` limits, lifetimes, bandwidth and peer policy; `[sip]` expiries, limits,
//! Digest algorithms, nonce lifetime and `[sip.keepalive]`; the dashboard's `[admin]`
//! `log_lines` and `source_table_size`; `[log] level` (applied by `control/reload.rs`).
//! Everything else (addresses, ports, realms, domains, modes, connection limits, `[rtp]`,
//! `[tls]` paths, `[store]`, the admin listener) is built once at start.

use super::Config;

/// Copies every live key of `new` that differs into `running`; the names of those changed.
pub fn adopt(running: &mut Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! take {
        ($($section:ident . $key:ident),* $(,)?) => {
            $(
                if running.$section.$key != new.$section.$key {
                    running.$section.$key = new.$section.$key.clone();
                    changed.push(concat!(stringify!($section), ".", stringify!($key)));
                }
            )*
        };
    }
    take!(
        turn.max_allocations,
        turn.max_allocations_per_user,
        turn.default_lifetime,
        turn.max_lifetime,
        turn.nonce_lifetime,
        turn.auth_failures_per_minute,
        turn.refusals_per_second,
        turn.max_bps,
        turn.allowed_peers,
        turn.denied_peers,
        turn.tcp_relay,
        turn.max_tcp_connections,
        sip.min_expires,
        sip.max_expires,
        sip.default_expires,
        sip.nonce_lifetime,
        sip.max_bindings_per_aor,
        sip.max_aors,
        sip.digest_algorithms,
        sip.auth_failures_per_minute,
        sip.refusals_per_second,
        sip.keepalive,
        admin.log_lines,
        admin.source_table_size,
    );
    changed
}

/// Whether any key of `section` (`"turn"`, `"sip"`) is among `changed`.
pub fn touches(changed: &[&str], section: &str) -> bool {
    changed.iter().any(|k| k.split('.').next() == Some(section))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_are_taken_and_named_and_the_rest_is_left() {
        let running = Config::parse(
            "[turn]\nmax_bps = 0\n[sip]\ndomain = \"example.org\"\n",
            "a.toml",
        )
        .expect("valid");
        let new = Config::parse(
            "[turn]\nmax_bps = 64000\nrealm = \"other\"\n[sip]\ndomain = \"example.org\"\n[sip.keepalive]\ninterval = \"30s\"\n",
            "b.toml",
        )
        .expect("valid");
        let mut r = running.clone();
        let changed = adopt(&mut r, &new);
        assert_eq!(changed, ["turn.max_bps", "sip.keepalive"]);
        assert_eq!(r.turn.max_bps, 64000);
        assert_eq!(r.turn.realm, "farside", "a realm waits for a restart");
        assert!(touches(&changed, "turn") && touches(&changed, "sip"));
        assert!(!touches(&changed, "rtp"));
        assert_ne!(
            r.turn, new.turn,
            "what is left differs: named for the restart"
        );
    }
}
