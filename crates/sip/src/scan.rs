//! Byte-level scanning shared by the parsers (RFC 3261 §25.1): tokens, linear white space,
//! quoted strings, comma-separated lists and `;name=value` parameters.

/// `token` characters (RFC 3261 §25.1), one flag per byte value.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Whether `s` is a non-empty token.
pub(crate) fn token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// White space, including the CRLF of a folded line (LWS, RFC 3261 §25.1).
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing white space.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// A decimal number of at most `max_digits` digits, nothing else.
pub(crate) fn number(s: &[u8], max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The index just past the quoted string that starts at `s[0] == b'"'`, honouring `\`
/// escapes; `None` if it does not end.
pub(crate) fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits `s` at top-level occurrences of `sep`: not inside a quoted string or `<...>`.
/// `None` if a quote or angle bracket is left open. Nothing is allocated.
pub(crate) fn split_top(s: &[u8], sep: u8) -> Option<SplitTop<'_>> {
    // Most values (parameters, plain lists) have neither quotes nor brackets: every `sep` is
    // then a split, with no state to carry.
    let simple = !s.iter().any(|&b| b == b'"' || b == b'<' || b == b'>');
    if !simple {
        let mut at = 0;
        while at < s.len() {
            at = next_top(s, at, sep)? + 1;
        }
    }
    Some(SplitTop {
        s,
        at: 0,
        sep,
        simple,
        done: false,
    })
}

/// The index of the next top-level `sep` at or after `from`, or `s.len()`; `None` if a quote
/// or angle bracket is left open.
fn next_top(s: &[u8], from: usize, sep: u8) -> Option<usize> {
    let mut i = from;
    let mut angle = false;
    while i < s.len() {
        match s[i] {
            b'"' if !angle => i += quoted_end(&s[i..])?,
            b'<' if !angle => {
                angle = true;
                i += 1;
            }
            b'>' if angle => {
                angle = false;
                i += 1;
            }
            b if b == sep && !angle => return Some(i),
            _ => i += 1,
        }
    }
    (!angle).then_some(s.len())
}

/// The parts of [`split_top`].
pub(crate) struct SplitTop<'a> {
    s: &'a [u8],
    at: usize,
    sep: u8,
    /// No quotes or brackets: split at every `sep`.
    simple: bool,
    done: bool,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let end = if self.simple {
            self.s[self.at..]
                .iter()
                .position(|&b| b == self.sep)
                .map_or(self.s.len(), |i| self.at + i)
        } else {
            // Checked balanced in `split_top`, so this always finds an end.
            next_top(self.s, self.at, self.sep).unwrap_or(self.s.len())
        };
        let part = &self.s[self.at..end];
        if end >= self.s.len() {
            self.done = true;
        } else {
            self.at = end + 1;
        }
        Some(part)
    }
}

/// Appends `n` in decimal (no formatting machinery: the hot paths write many numbers).
pub(crate) fn push_number(s: &mut impl std::fmt::Write, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if let Ok(text) = std::str::from_utf8(&digits[i..]) {
        let _ = s.write_str(text);
    }
}

/// A short text kept on the stack, for the parameters the hot paths write (`received=` with
/// an IPv6 address is 48 bytes): no allocation. A piece that does not fit is refused whole,
/// so the text is always valid UTF-8.
#[derive(Clone, Copy)]
pub(crate) struct Short {
    buf: [u8; 64],
    len: usize,
}

impl Short {
    /// An empty text.
    pub(crate) const fn new() -> Self {
        Short {
            buf: [0; 64],
            len: 0,
        }
    }

    /// The bytes written.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text written.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl std::fmt::Write for Short {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `bytes` (at most 32 are written: a digest, a MAC, a number) in lowercase hex, on the stack.
pub(crate) fn push_hex(s: &mut String, bytes: &[u8]) {
    let mut buf = [0u8; 64];
    let bytes = bytes.get(..32).unwrap_or(bytes);
    if let Ok(hex) = base16ct::lower::encode_str(bytes, &mut buf) {
        s.push_str(hex);
    }
}

/// A 64-bit hash of `parts` from a `key`-dependent start: stable, spread identifiers (To tags,
/// stateless branches, keep-alive phases, a request's identity), not a secret's protection.
/// Eight bytes per multiply (a byte at a time cost a REGISTER's whole text about 2,600 cycles),
/// each part's length mixed in so that parts cannot slide into each other, and MurmurHash3's
/// finalizer so that every bit of the result depends on every bit of the input.
pub(crate) fn hash64(key: u64, parts: &[&[u8]]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let round = |h: u64, w: u64| (h ^ w).wrapping_mul(M).rotate_left(29);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key;
    for part in parts {
        let mut words = part.chunks_exact(8);
        for w in &mut words {
            h = round(h, u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        let rest = words.remainder();
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = round(h, u64::from_le_bytes(tail));
        h = round(h, part.len() as u64);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `;name[=value]` parameters (RFC 3261 §25.1 `generic-param`, `uri-parameter`), in order.
/// Names compare case-insensitively; values are as written (a quoted value keeps its quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl<'a> Params<'a> {
    /// Parameters from the text after the first `;` (empty for none).
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Params { raw }
    }

    /// The raw text (without the leading `;`).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Every `(name, value)`; a parameter without `=` has no value.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let raw = self.raw;
        split_top(raw, b';')
            .into_iter()
            .flatten()
            .map(trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&p[..eq]), Some(trim(&p[eq + 1..]))),
                None => (p, None),
            })
    }

    /// The parameter `name`: `Some(None)` if present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether the parameter `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether every URI parameter is well formed (RFC 3261 §25.1 `uri-parameter`): names and
    /// values of `paramchar`s (unreserved, `[]/:&+$`, and `%` escapes).
    pub(crate) fn valid_uri(&self) -> bool {
        let paramchar = |b: u8| is_token(b) || b"[]/:&+$()".contains(&b);
        self.raw.split(|&b| b == b';').all(|p| {
            let (name, value) = match p.iter().position(|&b| b == b'=') {
                Some(eq) => (&p[..eq], Some(&p[eq + 1..])),
                None => (p, None),
            };
            !name.is_empty()
                && name.iter().all(|&b| paramchar(b))
                && value.is_none_or(|v| !v.is_empty() && v.iter().all(|&b| paramchar(b)))
        })
    }

    /// Whether every parameter is well formed: a token name and, if any, a token, quoted
    /// string or (for hosts) bracketed IPv6 value.
    pub(crate) fn valid(&self) -> bool {
        if self.raw.is_empty() {
            return true;
        }
        let Some(parts) = split_top(self.raw, b';') else {
            return false;
        };
        for p in parts {
            let p = trim(p);
            let (name, value) = match p.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&p[..eq]), Some(trim(&p[eq + 1..]))),
                None => (p, None),
            };
            if !token(name) {
                return false;
            }
            if !value.is_none_or(value_ok) {
                return false;
            }
        }
        true
    }
}

/// A parameter value: a token (with `:` for addresses), a quoted string, or `[IPv6]`.
fn value_ok(v: &[u8]) -> bool {
    match v.first() {
        Some(b'"') => quoted_end(v) == Some(v.len()),
        Some(b'[') => v.last() == Some(&b']'),
        _ => !v.is_empty() && v.iter().all(|&b| is_token(b) || b == b':'),
    }
}

/// `b` as an owned string, invalid UTF-8 replaced (U+FFFD): what a header value becomes when it
/// is kept. Valid text, the usual case, is checked a word at a time and copied once.
pub(crate) fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash64_depends_on_every_byte_the_key_and_where_parts_split() {
        let text = b"REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.7:5060\r\n";
        let h = hash64(7, &[text]);
        assert_eq!(h, hash64(7, &[text]), "stable");
        assert_ne!(h, hash64(8, &[text]), "keyed");
        // One bit flipped anywhere (a whole word, a word's top byte, the tail) changes it,
        // and changes about half the bits of the result.
        let mut flipped_bits = 0;
        for i in 0..text.len() {
            let mut other = *text;
            other[i] ^= 0x80;
            let g = hash64(7, &[&other]);
            assert_ne!(g, h, "byte {i}");
            flipped_bits += (g ^ h).count_ones();
        }
        let mean = f64::from(flipped_bits) / text.len() as f64;
        assert!((24.0..40.0).contains(&mean), "mean bits changed {mean}");
        // Parts cannot slide into each other, and an empty part still counts.
        assert_ne!(hash64(0, &[b"ab", b"c"]), hash64(0, &[b"a", b"bc"]));
        assert_ne!(hash64(0, &[b"abcdefgh"]), hash64(0, &[b"abcdefgh", b""]));
        assert_ne!(hash64(0, &[b"a\0"]), hash64(0, &[b"a"]));
    }

    #[test]
    fn push_hex_writes_two_digits_a_byte() {
        let mut s = String::from("fs");
        push_hex(&mut s, &0x00ab_cdef_0123_4567_u64.to_be_bytes());
        assert_eq!(s, "fs00abcdef01234567");
    }

    #[test]
    fn lists_and_params() {
        let parts: Vec<&[u8]> = split_top(b"a, \"x,y\" <sip:b;c,d>, e", b',')
            .expect("closed")
            .collect();
        assert_eq!(parts, [&b"a"[..], b" \"x,y\" <sip:b;c,d>", b" e"]);
        assert!(split_top(b"<sip:a", b',').is_none());
        assert!(split_top(b"\"open", b',').is_none());
        let p = Params::new(b"branch=z9hG4bK1 ; rport;received=192.0.2.1;Q=\"a;b\"");
        assert_eq!(p.get("branch"), Some(Some(&b"z9hG4bK1"[..])));
        assert_eq!(p.get("RPORT"), Some(None));
        assert_eq!(p.get("q"), Some(Some(&b"\"a;b\""[..])));
        assert_eq!(p.get("ttl"), None);
        assert!(p.valid());
        assert!(!Params::new(b"a b=c").valid());
        assert_eq!(number(b"4294967296", 10), Some(4_294_967_296));
        assert_eq!(number(b"12a", 10), None);
        assert_eq!(trim(b" \r\n\t x \r\n"), b"x");
        assert_eq!(trim(b"  "), b"");
    }
}
