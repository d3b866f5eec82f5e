//! Keys for MESSAGE-INTEGRITY(-SHA256) and USERHASH (RFC 8489 §9.1.1, §9.2.2, §14.4,
//! §18.5; RFC 5389 §15.4), and the string preparation they need.
//!
//! These allocate when a string needs rewriting; compute keys once per credential and cache
//! them, not once per packet.

use std::borrow::Cow;

use md5::Md5;
use sha2::{Digest, Sha256};
use unicode_normalization::{UnicodeNormalization, is_nfc};

use crate::error::PasswordError;

/// The short-term key: `OpaqueString(password)` (RFC 8489 §9.1.1). For ICE the password is
/// the peer's ice-pwd, which is ASCII and comes back unchanged.
pub fn short_term_key(password: &str) -> Result<Vec<u8>, PasswordError> {
    Ok(opaque_string(password)?.into_owned().into_bytes())
}

/// The long-term key for the MD5 password algorithm (RFC 8489 §9.2.2):
/// `MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))`.
///
/// `username` is taken as it is on the wire; the client processed it already (§14.3).
pub fn long_term_key_md5(
    username: &str,
    realm: &str,
    password: &str,
) -> Result<[u8; 16], PasswordError> {
    let realm = opaque_string(realm)?;
    let password = opaque_string(password)?;
    Ok(digest::<Md5>(&[username, ":", &realm, ":", &password]).into())
}

/// The long-term key for the SHA-256 password algorithm (RFC 8489 §9.2.2):
/// `SHA-256(username ":" OpaqueString(realm) ":" OpaqueString(password))`.
pub fn long_term_key_sha256(
    username: &str,
    realm: &str,
    password: &str,
) -> Result<[u8; 32], PasswordError> {
    let realm = opaque_string(realm)?;
    let password = opaque_string(password)?;
    Ok(digest::<Sha256>(&[username, ":", &realm, ":", &password]).into())
}

/// The RFC 5389 long-term key (RFC 5389 §15.4): `MD5(username ":" realm ":"
/// SASLprep(password))`. Differs from [`long_term_key_md5`] only for passwords that SASLprep
/// maps (NFKC, soft hyphens, ...), as in the RFC 5769 §2.4 test vector.
pub fn long_term_key_md5_rfc5389(
    username: &str,
    realm: &str,
    password: &str,
) -> Result<[u8; 16], PasswordError> {
    let password = saslprep(password)?;
    Ok(digest::<Md5>(&[username, ":", realm, ":", &password]).into())
}

/// USERHASH: `SHA-256(OpaqueString(username) ":" OpaqueString(realm))` (RFC 8489 §14.4).
pub fn userhash(username: &str, realm: &str) -> Result<[u8; 32], PasswordError> {
    let username = opaque_string(username)?;
    let realm = opaque_string(realm)?;
    Ok(digest::<Sha256>(&[&username, ":", &realm]).into())
}

/// SASLprep (RFC 4013), the preparation RFC 5389 used for passwords.
pub fn saslprep(s: &str) -> Result<Cow<'_, str>, PasswordError> {
    stringprep::saslprep(s).map_err(|_| PasswordError::Disallowed)
}

/// The OpaqueString profile of PRECIS (RFC 8265 §4.2), which RFC 8489 uses for usernames,
/// realms and passwords.
///
/// Applies its rules: non-ASCII spaces become U+0020 (§4.2.2 additional mapping), then NFC
/// (§4.2.2 normalization); no width or case mapping. The FreeformClass check (RFC 8264 §4.3)
/// is approximated without Unicode-version tables: it refuses the empty string, control
/// characters, noncharacters, and the default-ignorable code points of RFC 3454 table B.1
/// other than the joiners ZWNJ and ZWJ.
pub fn opaque_string(s: &str) -> Result<Cow<'_, str>, PasswordError> {
    // Most credentials are ASCII: nothing to map or normalize.
    let prepared = if s.is_ascii() || (is_nfc(s) && !s.chars().any(non_ascii_space)) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| if non_ascii_space(c) { ' ' } else { c })
                .nfc()
                .collect(),
        )
    };
    if prepared.is_empty() {
        return Err(PasswordError::Empty);
    }
    if prepared.chars().any(disallowed) {
        return Err(PasswordError::Disallowed);
    }
    Ok(prepared)
}

fn non_ascii_space(c: char) -> bool {
    stringprep::tables::non_ascii_space_character(c)
}

fn disallowed(c: char) -> bool {
    use stringprep::tables::{commonly_mapped_to_nothing, non_character_code_point};
    c.is_control()
        || non_character_code_point(c)
        || (commonly_mapped_to_nothing(c) && !matches!(c, '\u{200C}' | '\u{200D}'))
}

fn digest<D: Digest>(parts: &[&str]) -> sha2::digest::Output<D> {
    let mut d = D::new();
    for part in parts {
        d.update(part.as_bytes());
    }
    d.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_string_rules() {
        assert_eq!(
            opaque_string("VOkJxbRl1RmTxUk/WvJxBt"),
            Ok(Cow::Borrowed("VOkJxbRl1RmTxUk/WvJxBt"))
        );
        // U+3000 IDEOGRAPHIC SPACE maps to U+0020; decomposed e + U+0301 composes to U+00E9.
        assert_eq!(
            opaque_string("a\u{3000}e\u{301}").as_deref(),
            Ok("a \u{e9}")
        );
        assert_eq!(opaque_string(""), Err(PasswordError::Empty));
        assert_eq!(opaque_string("a\u{7}"), Err(PasswordError::Disallowed));
        assert_eq!(opaque_string("a\u{ad}b"), Err(PasswordError::Disallowed));
        assert_eq!(opaque_string("a\u{fffe}"), Err(PasswordError::Disallowed));
        // No case or width mapping, unlike SASLprep's NFKC.
        assert_eq!(
            opaque_string("M\u{aa}tr\u{2168}").as_deref(),
            Ok("M\u{aa}tr\u{2168}")
        );
    }

    #[test]
    fn saslprep_rfc5769_password() {
        // RFC 5769 §2.4: "The<U+00AD>M<U+00AA>tr<U+2168>" becomes "TheMatrIX".
        assert_eq!(
            saslprep("The\u{00AD}M\u{00AA}tr\u{2168}").as_deref(),
            Ok("TheMatrIX")
        );
    }

    #[test]
    fn long_term_keys() {
        // MD5("user:realm:pass"), computed independently.
        let k = long_term_key_md5("user", "realm", "pass").expect("ascii");
        assert_eq!(
            k,
            long_term_key_md5_rfc5389("user", "realm", "pass").expect("ascii")
        );
        assert_eq!(k, <[u8; 16]>::from(Md5::digest(b"user:realm:pass")));
        let k = long_term_key_sha256("user", "realm", "pass").expect("ascii");
        assert_eq!(k, <[u8; 32]>::from(Sha256::digest(b"user:realm:pass")));
        let h = userhash("user", "realm").expect("ascii");
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(b"user:realm")));
    }
}
