//! Who may allocate: long-term users (RFC 8489 §9.2) and ephemeral users derived from a shared
//! secret, the scheme coturn calls `use-auth-secret` (draft-uberti-behave-turn-rest).

use std::collections::HashMap;

use base64ct::{Base64, Encoding as _};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// A user's two long-term keys: `MD5(user:realm:password)` and its SHA-256 twin (RFC 8489
/// §9.2.2). The password itself is never kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserKeys {
    /// For PASSWORD-ALGORITHM MD5 (and every RFC 5389 client).
    pub md5: [u8; 16],
    /// For PASSWORD-ALGORITHM SHA-256.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKeys(..)")
    }
}

/// Everything the server checks credentials against: a snapshot, replaced as a whole when
/// the store changes, so no request ever waits for the database.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// By realm, then username: a look-up borrows both (it runs for every authenticated
    /// request) where one keyed by the pair would copy them.
    users: HashMap<String, HashMap<String, UserKeys>>,
    userhashes: HashMap<[u8; 32], (String, String)>,
    secrets: Vec<Vec<u8>>,
}

impl Credentials {
    /// An empty set: nobody can authenticate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a long-term user of `realm`.
    pub fn add_user(&mut self, realm: &str, username: &str, keys: UserKeys) {
        if let Ok(hash) = farside_stun::userhash(username, realm) {
            self.userhashes
                .insert(hash, (realm.to_owned(), username.to_owned()));
        }
        self.users
            .entry(realm.to_owned())
            .or_default()
            .insert(username.to_owned(), keys);
    }

    /// Adds a shared secret for ephemeral credentials; any of them verifies (rotation).
    pub fn add_secret(&mut self, secret: &[u8]) {
        self.secrets.push(secret.to_vec());
    }

    /// The keys of `username` in `realm`.
    pub fn user(&self, realm: &str, username: &str) -> Option<&UserKeys> {
        self.users.get(realm)?.get(username)
    }

    /// The username behind a USERHASH (RFC 8489 §14.4).
    pub fn by_userhash(&self, hash: &[u8; 32]) -> Option<&(String, String)> {
        self.userhashes.get(hash)
    }

    /// The shared secrets.
    pub fn secrets(&self) -> &[Vec<u8>] {
        &self.secrets
    }

    /// Number of long-term users.
    pub fn user_count(&self) -> usize {
        self.users.values().map(HashMap::len).sum()
    }
}

/// The ephemeral password for `username` under `secret`: base64(HMAC-SHA1(secret, username)),
/// as coturn's `static-auth-secret` and the TURN REST API draft define it.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(secret) else {
        return String::new(); // HMAC takes keys of any length
    };
    mac.update(username.as_bytes());
    Base64::encode_string(&mac.finalize().into_bytes())
}

/// The expiry of an ephemeral username `expiry-timestamp[:user]`, if it has that form.
pub(crate) fn rest_expiry(username: &str) -> Option<u64> {
    let stamp = username.split(':').next()?;
    if stamp.is_empty() || stamp.len() > 20 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_password_matches_coturns_scheme() {
        // `echo -n "1700000000:alice" | openssl dgst -sha1 -hmac "north" -binary | base64`
        assert_eq!(
            rest_password(b"north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }

    #[test]
    fn rest_passwords_are_padded_base64() {
        // RFC 4648 §10's vectors, as coturn's base64 writes them.
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(Base64::encode_string(input.as_bytes()), want);
        }
    }

    #[test]
    fn rest_usernames() {
        assert_eq!(rest_expiry("1700000000:alice"), Some(1_700_000_000));
        assert_eq!(rest_expiry("1700000000"), Some(1_700_000_000));
        assert_eq!(rest_expiry("alice"), None);
        assert_eq!(rest_expiry(":alice"), None);
        assert_eq!(rest_expiry("17a:alice"), None);
    }
}
