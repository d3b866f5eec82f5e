//! Long-term and ephemeral credentials (RFC 8489 §9.2.4, the TURN REST scheme), with a
//! rate limit on failures per source.

use farside_time::Timestamp;

use farside_stun::attributes::{Nonce, PasswordAlgorithm, Realm, Userhash, Username};
use farside_stun::{Message, attr_type};

use super::{Auth, Step, TurnServer};
use crate::allocation::{FiveTuple, Key};
use crate::credentials::{rest_expiry, rest_password};
use crate::outcome::{Dropped, Handled, Refusal};

/// The algorithms offered, in order of preference (RFC 8489 §14.11).
pub(super) const ALGORITHMS: [PasswordAlgorithm<'static>; 2] = [
    PasswordAlgorithm {
        algorithm: PasswordAlgorithm::SHA256,
        parameters: &[],
    },
    PasswordAlgorithm {
        algorithm: PasswordAlgorithm::MD5,
        parameters: &[],
    },
];

impl TurnServer {
    pub(super) fn authenticate(
        &mut self,
        now: Timestamp,
        five: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Step<Auth> {
        let source = five.client.ip();
        if self.quotas.blocked(source, now) {
            return Err(Handled::Dropped(Dropped::AuthRateLimited));
        }
        let sha256_integrity = msg
            .raw_attribute(attr_type::MESSAGE_INTEGRITY_SHA256)
            .is_some();
        if !sha256_integrity && msg.raw_attribute(attr_type::MESSAGE_INTEGRITY).is_none() {
            return Err(self.challenge(now, msg, five, Refusal::Challenge, out));
        }
        let (Some(Ok(Realm(realm))), Some(Ok(Nonce(nonce)))) =
            (msg.attribute::<Realm>(), msg.attribute::<Nonce>())
        else {
            return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out));
        };
        let fresh = self.nonces.made_at(nonce.as_bytes()).is_some_and(|made| {
            let age = now.unix_secs().saturating_sub(made);
            age <= self.config.nonce_lifetime.as_secs()
        });
        if !fresh {
            return Err(self.challenge(now, msg, five, Refusal::StaleNonce, out));
        }
        if realm != self.config.realm {
            return Err(self.challenge(now, msg, five, Refusal::WrongPassword, out));
        }
        // RFC 8489 §9.2.4: with the password-algorithms bit in our nonce, a client that sends
        // one of PASSWORD-ALGORITHMS / PASSWORD-ALGORITHM must send both, the list exactly
        // as we gave it, and choose from it. A client that sends neither uses MD5.
        let algorithm = match (
            msg.raw_attribute(attr_type::PASSWORD_ALGORITHMS),
            msg.attribute::<PasswordAlgorithm>(),
        ) {
            (None, None) => PasswordAlgorithm::MD5,
            (Some(list), Some(Ok(chosen)))
                if list.value == offered_algorithms()
                    && ALGORITHMS.iter().any(|a| a.algorithm == chosen.algorithm)
                    && chosen.parameters.is_empty() =>
            {
                chosen.algorithm
            }
            _ => return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out)),
        };
        let username = match (msg.attribute::<Username>(), msg.attribute::<Userhash>()) {
            (Some(Ok(Username(u))), _) => u.to_owned(),
            (None, Some(Ok(Userhash(h)))) => match self.credentials.by_userhash(&h) {
                Some((r, u)) if *r == realm => u.clone(),
                _ => return Err(self.fail(now, msg, five, out)),
            },
            _ => return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out)),
        };
        let verify = |key: &[u8]| {
            if sha256_integrity {
                msg.verify_integrity_sha256(key).is_ok()
            } else {
                msg.verify_integrity(key).is_ok()
            }
        };
        let key_for = |password: &str| -> Option<Key> {
            match algorithm {
                PasswordAlgorithm::SHA256 => {
                    farside_stun::long_term_key_sha256(&username, realm, password)
                        .ok()
                        .map(Key::Sha256)
                }
                _ => farside_stun::long_term_key_md5(&username, realm, password)
                    .ok()
                    .map(Key::Md5),
            }
        };
        let mut found = None;
        if let Some(expiry) =
            rest_expiry(&username).filter(|_| !self.credentials.secrets().is_empty())
        {
            if expiry >= now.unix_secs() {
                found = self
                    .credentials
                    .secrets()
                    .iter()
                    .filter_map(|s| key_for(&rest_password(s, &username)))
                    .find(|k| verify(k.bytes()));
            }
        } else if let Some(keys) = self.credentials.user(realm, &username) {
            let key = match algorithm {
                PasswordAlgorithm::SHA256 => Key::Sha256(keys.sha256),
                _ => Key::Md5(keys.md5),
            };
            found = verify(key.bytes()).then_some(key);
        }
        match found {
            Some(key) => Ok(Auth {
                realm: realm.to_owned(),
                username,
                key,
                sha256_integrity,
            }),
            None => Err(self.fail(now, msg, five, out)),
        }
    }

    /// A failed authentication: counted against the source, answered 401.
    fn fail(
        &mut self,
        now: Timestamp,
        msg: &Message<'_>,
        five: FiveTuple,
        out: &mut [u8],
    ) -> Handled {
        self.quotas.failed(five.client.ip(), now);
        self.challenge(now, msg, five, Refusal::WrongPassword, out)
    }
}

/// The wire value of our PASSWORD-ALGORITHMS, for comparing with what a client echoes.
fn offered_algorithms() -> &'static [u8] {
    // SHA-256 (2), no parameters; MD5 (1), no parameters.
    &[0, 2, 0, 0, 0, 1, 0, 0]
}
