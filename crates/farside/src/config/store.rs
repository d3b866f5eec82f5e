//! `[store]`: where users, secrets and registrations live, and the default data directory.

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...`; default: `farside.db` in the data directory.
    pub url: String,
    /// This node's name among those sharing the store: the registrations it holds the flows
    /// of are recorded under it, and it restores only those. Default: the host's name.
    pub node: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: format!(
                "sqlite://{}",
                default_data_dir().join("farside.db").display()
            ),
            node: host_name(),
        }
    }
}

/// The kernel's host name, else "farside".
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "farside".to_owned())
}

/// Where Farside keeps its database by default: systemd's `$STATE_DIRECTORY`, else
/// `/var/lib/farside` for root, else `$XDG_STATE_HOME/farside` or `~/.local/state/farside`.
pub fn default_data_dir() -> std::path::PathBuf {
    // /proc/self belongs to the process's effective user (libc::geteuid would need `unsafe`,
    // which this crate denies).
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    data_dir_from(
        std::env::var_os("STATE_DIRECTORY"),
        root,
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`default_data_dir`] from its inputs (tests cannot safely change the environment).
fn data_dir_from(
    state_directory: Option<std::ffi::OsString>,
    root: bool,
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(d) = state_directory.filter(|d| !d.is_empty()) {
        // systemd may list several, separated by ':'; the first is ours.
        let d = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        return PathBuf::from(d);
    }
    if root {
        return PathBuf::from("/var/lib/farside");
    }
    if let Some(x) = xdg_state_home.filter(|d| !d.is_empty()) {
        return PathBuf::from(x).join("farside");
    }
    let home = home.map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/farside")
}

impl Config {
    pub(super) fn validate_store(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let node = &self.store.node;
        if node.is_empty() || node.len() > 64 || node.chars().any(char::is_control) {
            return Err(invalid(
                "store.node",
                "1 to 64 characters, no control characters".into(),
            ));
        }
        let url = &self.store.url;
        let postgres = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"));
        if postgres.is_some_and(|rest| !rest.is_empty()) {
            return Ok(());
        }
        if url.strip_prefix("sqlite://").is_none_or(str::is_empty) {
            // Name the scheme only: a database URL may carry a password.
            let scheme = url.split_once("://").map_or("no scheme", |(s, _)| s);
            return Err(invalid(
                "store.url",
                format!(
                    "{scheme}: expected sqlite://PATH or postgres://user:password@host/database"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_follows_systemd_then_root_then_xdg() {
        use std::ffi::OsString;
        use std::path::Path;
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            data_dir_from(some("/var/lib/farside:/var/lib/other"), false, None, None),
            Path::new("/var/lib/farside")
        );
        assert_eq!(
            data_dir_from(some(""), true, some("/x"), some("/home/u")),
            Path::new("/var/lib/farside")
        );
        assert_eq!(
            data_dir_from(None, false, some("/x"), some("/home/u")),
            Path::new("/x/farside")
        );
        assert_eq!(
            data_dir_from(None, false, some(""), some("/home/u")),
            Path::new("/home/u/.local/state/farside")
        );
    }
}
