//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760: MD5 and SHA-256),
//! with stateless nonces: a nonce is the time it was made and an HMAC of it under a key the
//! server holds, so any copy of a still-valid nonce is accepted (a retransmission, a new
//! source port, a rewritten request from an ALG) and an expired one is answered `stale=true`.
//!
//! The user store keeps, per user, H(username:realm:password) for each algorithm: the
//! long-term keys TURN uses are exactly those (RFC 8489 §9.2.2), so one store serves both.

use std::time::Duration;

use farside_time::Timestamp;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::scan::{is_lws, is_token, push_hex, quoted_end, trim};

/// A digest algorithm (RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617), what most phones still use.
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn of(token: &[u8]) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case(b"MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case(b"SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lowercase hex of H(parts joined by ':'), on the stack.
    fn hash_hex(self, parts: &[&[u8]]) -> Hex {
        fn feed<D: md5::Digest>(mut d: D, parts: &[&[u8]]) -> D {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            d
        }
        match self {
            Algorithm::Md5 => Hex::of(&feed(Md5::new(), parts).finalize()),
            Algorithm::Sha256 => Hex::of(&feed(Sha256::new(), parts).finalize()),
        }
    }
}

/// The fields of an `Authorization` / `Proxy-Authorization` Digest value, as written (quotes
/// removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: &'a [u8],
    /// `realm`.
    pub realm: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `uri` (the digest-uri).
    pub uri: &'a [u8],
    /// `response`: hex.
    pub response: &'a [u8],
    /// `algorithm` (MD5 when absent).
    pub algorithm: Option<Algorithm>,
    /// `qop` (only `auth` is supported).
    pub qop: Option<&'a [u8]>,
    /// `nc`.
    pub nc: Option<&'a [u8]>,
    /// `cnonce`.
    pub cnonce: Option<&'a [u8]>,
}

/// Why credentials are not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not a Digest value, or a field missing or malformed (400, or a fresh challenge).
    Malformed,
    /// An algorithm or qop this server does not offer.
    Unsupported,
    /// The nonce is not one of ours (a fresh challenge, not stale).
    UnknownNonce,
    /// The nonce was ours but is too old: the response may be right, so `stale=true`.
    Stale,
    /// Unknown user, or the response does not match.
    Wrong,
}

impl<'a> Credentials<'a> {
    /// Parses a `Digest k=v, k="v", ...` value.
    pub fn parse(value: &'a [u8]) -> Result<Credentials<'a>, Refusal> {
        let value = trim(value);
        let rest = value
            .get(..6)
            .filter(|s| s.eq_ignore_ascii_case(b"Digest"))
            .map(|_| &value[6..])
            .ok_or(Refusal::Malformed)?;
        let mut c = Credentials {
            username: &[],
            realm: &[],
            nonce: &[],
            uri: &[],
            response: &[],
            algorithm: None,
            qop: None,
            nc: None,
            cnonce: None,
        };
        // One pass: `name = token` or `name = "quoted"`, separated by commas and white space.
        let mut i = 0;
        loop {
            while rest.get(i).is_some_and(|&b| b == b',' || is_lws(b)) {
                i += 1;
            }
            if i >= rest.len() {
                break;
            }
            let start = i;
            while rest.get(i).copied().is_some_and(is_token) {
                i += 1;
            }
            let name = &rest[start..i];
            while rest.get(i).copied().is_some_and(is_lws) {
                i += 1;
            }
            if name.is_empty() || rest.get(i) != Some(&b'=') {
                return Err(Refusal::Malformed);
            }
            i += 1;
            while rest.get(i).copied().is_some_and(is_lws) {
                i += 1;
            }
            let v = if rest.get(i) == Some(&b'"') {
                let end = quoted_end(&rest[i..]).ok_or(Refusal::Malformed)?;
                let v = &rest[i + 1..i + end - 1];
                i += end;
                v
            } else {
                let start = i;
                while rest.get(i).is_some_and(|&b| b != b',' && !is_lws(b)) {
                    i += 1;
                }
                &rest[start..i]
            };
            // Only white space may come before the next comma.
            while rest.get(i).copied().is_some_and(is_lws) {
                i += 1;
            }
            if rest.get(i).is_some_and(|&b| b != b',') {
                return Err(Refusal::Malformed);
            }
            let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
            if is("username") {
                c.username = v;
            } else if is("realm") {
                c.realm = v;
            } else if is("nonce") {
                c.nonce = v;
            } else if is("uri") {
                c.uri = v;
            } else if is("response") {
                c.response = v;
            } else if is("algorithm") {
                c.algorithm = Some(Algorithm::of(v).ok_or(Refusal::Unsupported)?);
            } else if is("qop") {
                c.qop = Some(v);
            } else if is("nc") {
                c.nc = Some(v);
            } else if is("cnonce") {
                c.cnonce = Some(v);
            }
        }
        if [c.username, c.realm, c.nonce, c.uri, c.response]
            .iter()
            .any(|f| f.is_empty())
        {
            return Err(Refusal::Malformed);
        }
        Ok(c)
    }

    /// The algorithm used (MD5 when the field is absent, RFC 7616 §3.4).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }

    /// Checks the response for a request with `method`, given HA1 = H(username:realm:password)
    /// for the credentials' algorithm (`None`: no such user), and the nonce under `nonces` at
    /// `now`.
    pub fn verify(
        &self,
        method: &[u8],
        ha1: Option<&[u8]>,
        nonces: &Nonces,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let alg = self.algorithm();
        let ha1 = Hex::of(ha1.ok_or(Refusal::Wrong)?);
        let ha2 = alg.hash_hex(&[method, self.uri]);
        let expected = match self.qop {
            None => alg.hash_hex(&[ha1.as_bytes(), self.nonce, ha2.as_bytes()]),
            Some(q) if q.eq_ignore_ascii_case(b"auth") => {
                let (Some(nc), Some(cnonce)) = (self.nc, self.cnonce) else {
                    return Err(Refusal::Malformed);
                };
                alg.hash_hex(&[
                    ha1.as_bytes(),
                    self.nonce,
                    nc,
                    cnonce,
                    b"auth",
                    ha2.as_bytes(),
                ])
            }
            Some(_) => return Err(Refusal::Unsupported),
        };
        let right: bool = expected
            .as_bytes()
            .ct_eq(Hex::lower(self.response).as_bytes())
            .into();
        // The nonce is judged after the response, so that an old nonce with a right
        // response is `stale` (retry at once) and a wrong one is just wrong.
        match nonces.check(self.nonce, now) {
            Err(Refusal::UnknownNonce) => Err(Refusal::UnknownNonce),
            _ if !right => Err(Refusal::Wrong),
            r => r,
        }
    }
}

/// Makes and checks stateless nonces: 8 hex digits of the Unix second they were made, 8 of a
/// serial number, then 32 of an HMAC-SHA-256 of both. Every challenge gets a nonce of its own
/// (the serial), so that the uses of one nonce are one client's and can be counted
/// ([`crate::nonce_counts`]); the server keeps no table of the nonces it gave out.
#[derive(Clone)]
pub struct Nonces {
    /// HMAC-SHA-256 with the key already taken in (its two padded blocks hashed once, not for
    /// every nonce). HMAC takes a key of any length: this is never `None`.
    keyed: Option<Hmac<Sha256>>,
    lifetime: Duration,
    /// The next serial number.
    serial: std::cell::Cell<u32>,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces(..)")
    }
}

impl Nonces {
    /// A new lifetime (a reload); nonces given out are judged by it from now on.
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// Nonces signed with `key` (random, kept by the server), valid for `lifetime`.
    pub fn new(key: [u8; 32], lifetime: Duration) -> Self {
        // Serials start where the key says, so that two servers (or a restart) with one key
        // do not begin with the same nonce in the same second.
        let serial = u32::from_be_bytes([key[0], key[7], key[15], key[31]]);
        Nonces {
            keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok(),
            lifetime,
            serial: std::cell::Cell::new(serial),
        }
    }

    /// A nonce made at `now` (it carries the Unix second), different from every other made in
    /// the same second.
    pub fn make(&self, now: Timestamp) -> String {
        // The second fits 32 bits until 2106.
        let secs = now.unix_secs() as u32;
        let serial = self.serial.get();
        self.serial.set(serial.wrapping_add(1));
        let mut s = String::with_capacity(48);
        push_hex(&mut s, &secs.to_be_bytes());
        push_hex(&mut s, &serial.to_be_bytes());
        push_hex(&mut s, &self.mac(secs, serial));
        s
    }

    /// `Ok` if ours and fresh at `now`; `Stale` if ours but older than the lifetime (or from
    /// the future beyond a minute's clock step); `UnknownNonce` otherwise.
    pub fn check(&self, nonce: &[u8], now: Timestamp) -> Result<(), Refusal> {
        let now = now.unix_secs();
        if nonce.len() != 48 || !nonce.iter().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::UnknownNonce);
        }
        let hex = |r: std::ops::Range<usize>| {
            u32::from_str_radix(std::str::from_utf8(&nonce[r]).unwrap_or("x"), 16)
                .map_err(|_| Refusal::UnknownNonce)
        };
        let (secs, serial) = (hex(0..8)?, hex(8..16)?);
        let made = u64::from(secs);
        let ours: bool = Hex::of(&self.mac(secs, serial))
            .as_bytes()
            .ct_eq(Hex::lower(&nonce[16..]).as_bytes())
            .into();
        if !ours {
            return Err(Refusal::UnknownNonce);
        }
        if now.saturating_sub(made) > self.lifetime.as_secs() || made > now + 60 {
            return Err(Refusal::Stale);
        }
        Ok(())
    }

    /// The Unix second a nonce of the form [`Nonces::make`] writes was made (unchecked: call
    /// [`Nonces::check`] first).
    pub fn made_at(nonce: &[u8]) -> Option<u64> {
        let digits = nonce.get(..8)?;
        u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    }

    fn mac(&self, secs: u32, serial: u32) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(mut mac) = self.keyed.clone() {
            mac.update(b"sip digest nonce");
            mac.update(&secs.to_be_bytes());
            mac.update(&serial.to_be_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        }
        out
    }
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` value offering `algorithm` with `qop="auth"`.
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    let mut v = String::with_capacity(realm.len() + nonce.len() + 72);
    v.push_str("Digest realm=\"");
    v.push_str(realm);
    v.push_str("\", nonce=\"");
    v.push_str(nonce);
    v.push_str("\", algorithm=");
    v.push_str(algorithm.as_str());
    v.push_str(", qop=\"auth\"");
    if stale {
        v.push_str(", stale=true");
    }
    v
}

/// Lowercase hex of up to 32 bytes (a SHA-256), on the stack.
struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl Hex {
    fn of(bytes: &[u8]) -> Hex {
        let mut buf = [0; 64];
        let bytes = bytes.get(..32).unwrap_or(bytes);
        let len = base16ct::lower::encode(bytes, &mut buf).map_or(0, <[u8]>::len);
        Hex { buf, len }
    }

    /// `text` (at most 64 bytes, else nothing) in lower case, for comparing with a hex digest.
    fn lower(text: &[u8]) -> Hex {
        let mut h = Hex {
            buf: [0; 64],
            len: 0,
        };
        if let Some(b) = h.buf.get_mut(..text.len()) {
            b.copy_from_slice(text);
            b.make_ascii_lowercase();
            h.len = text.len();
        } else {
            // Longer than any digest: compares unequal (one byte more than the longest).
            h.len = 0;
            h.buf[0] = b'!';
            h.len = 1;
        }
        h
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        let mut s = String::new();
        push_hex(&mut s, bytes);
        s
    }

    /// RFC 2617 §3.5's example, with the nonce replaced by one of ours.
    fn authorization(nonce: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"{nonce}\", \
             uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"{response}\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""
        )
    }

    fn ha1(alg: Algorithm) -> Vec<u8> {
        let joined = b"Mufasa:testrealm@host.com:Circle Of Life";
        match alg {
            Algorithm::Md5 => Md5::digest(joined).to_vec(),
            Algorithm::Sha256 => Sha256::digest(joined).to_vec(),
        }
    }

    #[test]
    fn the_rfc_2617_example_computes() {
        // RFC 2617 §3.5: nonce dcd98b7102dd2f0e8b11d0f600bfb0c093 gives this response.
        let v = authorization(
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "6629fae49393a05397450978507c4ef1",
        );
        let c = Credentials::parse(v.as_bytes()).expect("parses");
        let ha1 = hex(&ha1(Algorithm::Md5));
        let ha2 = Algorithm::Md5.hash_hex(&[b"GET", c.uri]);
        let r = Algorithm::Md5.hash_hex(&[
            ha1.as_bytes(),
            c.nonce,
            b"00000001",
            b"0a4f113b",
            b"auth",
            ha2.as_bytes(),
        ]);
        assert_eq!(r.as_bytes(), b"6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn fresh_stale_unknown_and_wrong() {
        let at = Timestamp::from_unix_secs;
        let nonces = Nonces::new([5; 32], Duration::from_secs(300));
        let nonce = nonces.make(at(1_000_000));
        assert_eq!(nonce.len(), 48);
        assert_ne!(nonce, nonces.make(at(1_000_000)), "one nonce per challenge");
        assert_eq!(Nonces::made_at(nonce.as_bytes()), Some(1_000_000));
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let ha1v = ha1(alg);
            let h1 = hex(&ha1v);
            let ha2 = alg.hash_hex(&[b"REGISTER", b"/dir/index.html"]);
            let response = alg.hash_hex(&[
                h1.as_bytes(),
                nonce.as_bytes(),
                b"00000001",
                b"0a4f113b",
                b"auth",
                ha2.as_bytes(),
            ]);
            let response = String::from_utf8_lossy(response.as_bytes()).into_owned();
            let mut v = authorization(&nonce, &response);
            if alg == Algorithm::Sha256 {
                v.push_str(", algorithm=SHA-256");
            }
            let c = Credentials::parse(v.as_bytes()).expect("parses");
            assert_eq!(c.algorithm(), alg);
            // Reused within its lifetime: accepted every time.
            for now in [1_000_000, 1_000_100, 1_000_300] {
                assert_eq!(c.verify(b"REGISTER", Some(&ha1v), &nonces, at(now)), Ok(()));
            }
            assert_eq!(
                c.verify(b"REGISTER", Some(&ha1v), &nonces, at(1_000_301)),
                Err(Refusal::Stale)
            );
            assert_eq!(
                c.verify(b"INVITE", Some(&ha1v), &nonces, at(1_000_001)),
                Err(Refusal::Wrong),
                "another method"
            );
            assert_eq!(
                c.verify(b"REGISTER", None, &nonces, at(1_000_001)),
                Err(Refusal::Wrong),
                "no such user"
            );
            let other = Nonces::new([6; 32], Duration::from_secs(300));
            assert_eq!(
                c.verify(b"REGISTER", Some(&ha1v), &other, at(1_000_001)),
                Err(Refusal::UnknownNonce)
            );
        }
        assert_eq!(Credentials::parse(b"Basic abc"), Err(Refusal::Malformed));
        assert_eq!(
            Credentials::parse(b"Digest username=\"a\", algorithm=SHA-512"),
            Err(Refusal::Unsupported)
        );
        assert!(challenge("example.org", &nonce, Algorithm::Sha256, true).ends_with("stale=true"));
    }
}
