//! The admin API's bearer token: one job, one failure rule.
//!
//! The token lives in a file beside the store (`admin.token`, mode 0600), made with 32 random
//! bytes on the first start and kept across restarts, so whoever may read the server's data
//! directory (root, the `farside` user) may use the API, as with a database's cookie file.
//! `farside status` and the other commands read it from there. A file that cannot be read or
//! written fails the start: an API nobody can use, or one with a guessable token, is worse
//! than none.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The token's file for a configuration: beside an SQLite store, else in the data directory.
pub fn path(config: &crate::config::Config) -> PathBuf {
    if let Some(p) = &config.admin.token_file {
        return p.clone();
    }
    let store = config.store.url.strip_prefix("sqlite://").map(Path::new);
    match store
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
    {
        Some(dir) => dir.join("admin.token"),
        None => crate::config::default_data_dir().join("admin.token"),
    }
}

/// The token in `path`, made there first if there is none.
pub fn load_or_create(path: &Path) -> anyhow::Result<String> {
    match read(path) {
        Ok(t) => return Ok(t),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("S013 cannot read {}", path.display()));
        }
        Err(_) => {}
    }
    let token =
        crate::runtime::seed::random_hex().context("S013 no randomness for the admin token")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("S013 cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("S013 cannot create {}", path.display()))?;
    writeln!(f, "{token}").with_context(|| format!("S013 cannot write {}", path.display()))?;
    Ok(token)
}

/// The token in `path`.
pub fn read(path: &Path) -> std::io::Result<String> {
    let t = std::fs::read_to_string(path)?;
    let t = t.trim();
    if t.len() < 32 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the token is shorter than 32 characters",
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_kept() {
        let dir = std::env::temp_dir().join(format!("farside-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("admin.token");
        let first = load_or_create(&path).expect("made");
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(&path).expect("kept"), first);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "short").expect("write");
        assert!(load_or_create(&path).is_err(), "a damaged token fails");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
