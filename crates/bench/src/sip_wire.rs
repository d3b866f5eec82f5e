//! The few bytes of SIP the registration load needs, written by hand so that they measure
//! servers, not our codec: the two REGISTERs of a registration with Digest (RFC 3261 §10.2,
//! §22.4; RFC 2617 §3.2.2), the status line and run tag of an answer, and the challenge of a
//! 401.
//!
//! Every request of a run carries the run's tag followed by the registration's sequence number
//! (`{tag}-{seq}`) in its Via branch, From tag and Call-ID, so an answer maps to its
//! registration by index whichever of them a server echoes first.

use md5::{Digest as _, Md5};

/// Largest request written (a REGISTER with credentials is about 600 bytes).
pub(crate) const MAX_REQUEST: usize = 1500;

/// Who registers, and where.
#[derive(Debug, Clone)]
pub(crate) struct Phone<'a> {
    /// The user part of the address of record (and the Digest username).
    pub(crate) user: &'a str,
    /// The domain of the Request-URI, From and To.
    pub(crate) domain: &'a str,
    /// Last byte of the phone's private address 192.168.1.x, in Via and Contact: a phone behind
    /// a NAT, so every NAT test a registrar runs fires.
    pub(crate) private_host: u8,
}

/// The credentials part of the second REGISTER.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authorization<'a> {
    /// The challenge it answers.
    pub(crate) challenge: &'a Challenge<'a>,
    /// `response`, as 32 lowercase hex digits.
    pub(crate) response: &'a [u8; 32],
    /// `cnonce`, sent with `qop=auth`.
    pub(crate) cnonce: &'a str,
}

/// A request being written into a fixed buffer; writing past its end fails the whole request.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn num(&mut self, n: u64) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..])
    }

    fn tagged(&mut self, tag: &str, seq: u64) -> Option<()> {
        self.put(tag.as_bytes())?;
        self.put(b"-")?;
        self.num(seq)
    }
}

/// Writes REGISTER number `cseq` (1: without credentials, 2: with `auth`) of registration
/// `seq` into `buf`, as `bench/sip/register-load.xml` does for SIPp. Returns its length, or
/// `None` when it does not fit.
pub(crate) fn write_register(
    buf: &mut [u8],
    phone: &Phone<'_>,
    tag: &str,
    seq: u64,
    cseq: u8,
    auth: Option<Authorization<'_>>,
) -> Option<usize> {
    let mut o = Out { buf, len: 0 };
    let d = phone.domain.as_bytes();
    let user = phone.user.as_bytes();
    let host = u64::from(phone.private_host);
    o.put(b"REGISTER sip:")?;
    o.put(d)?;
    o.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.")?;
    o.num(host)?;
    o.put(b":5060;branch=z9hG4bK")?;
    o.tagged(tag, seq)?;
    o.put(b".")?;
    o.num(u64::from(cseq))?;
    o.put(b";rport\r\nFrom: <sip:")?;
    o.put(user)?;
    o.put(b"@")?;
    o.put(d)?;
    o.put(b">;tag=")?;
    o.tagged(tag, seq)?;
    o.put(b"\r\nTo: <sip:")?;
    o.put(user)?;
    o.put(b"@")?;
    o.put(d)?;
    o.put(b">\r\nCall-ID: ")?;
    o.tagged(tag, seq)?;
    o.put(b"@bench\r\nCSeq: ")?;
    o.num(u64::from(cseq))?;
    o.put(b" REGISTER\r\nContact: <sip:")?;
    o.put(user)?;
    o.put(b"@192.168.1.")?;
    o.num(host)?;
    o.put(b":5060>\r\n")?;
    if let Some(a) = auth {
        let c = a.challenge;
        o.put(b"Authorization: Digest username=\"")?;
        o.put(user)?;
        o.put(b"\",realm=\"")?;
        o.put(c.realm)?;
        o.put(b"\",nonce=\"")?;
        o.put(c.nonce)?;
        o.put(b"\",uri=\"sip:")?;
        o.put(d)?;
        o.put(b"\",response=\"")?;
        o.put(a.response)?;
        o.put(b"\",algorithm=MD5")?;
        if c.qop_auth {
            o.put(b",qop=auth,nc=00000001,cnonce=\"")?;
            o.put(a.cnonce.as_bytes())?;
            o.put(b"\"")?;
        }
        if let Some(opaque) = c.opaque {
            o.put(b",opaque=\"")?;
            o.put(opaque)?;
            o.put(b"\"")?;
        }
        o.put(b"\r\n")?;
    }
    o.put(b"Max-Forwards: 70\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")?;
    Some(o.len)
}

/// Whether `bytes` is a request (an OPTIONS or NOTIFY ping, RFC 3261 §7.1: a method token,
/// then a space) or a bare keep-alive (CRLFs, RFC 5626 §3.5.1, or zeros), not an answer.
pub(crate) fn is_ping(bytes: &[u8]) -> bool {
    if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return !bytes.is_empty();
    }
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method > 0 && bytes.get(method) == Some(&b' ')
}

/// The status code of an answer and the sequence number its run tag carries, if `bytes` is a
/// SIP response that mentions `{tag}-{seq}`.
pub(crate) fn parse_answer(bytes: &[u8], tag: &str) -> Option<(u16, u64)> {
    let status = bytes.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    if !status.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = status
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let tag = tag.as_bytes();
    let at = bytes
        .windows(tag.len() + 1)
        .position(|w| w.starts_with(tag) && w.last() == Some(&b'-'))?;
    let digits = &bytes[at + tag.len() + 1..];
    let n = digits.iter().take_while(|d| d.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let seq = digits[..n]
        .iter()
        .fold(0u64, |s, d| s * 10 + u64::from(d - b'0'));
    Some((status, seq))
}

/// A Digest challenge (RFC 2617 §3.2.1), borrowed from the 401 that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `opaque`, to be echoed.
    pub opaque: Option<&'a [u8]>,
    /// `qop` offers `auth`.
    pub qop_auth: bool,
}

/// The Digest challenge of a 401's WWW-Authenticate header, if it has one with a realm and a
/// nonce and its algorithm (if named) is MD5.
pub fn parse_challenge(bytes: &[u8]) -> Option<Challenge<'_>> {
    const NAME: &[u8] = b"www-authenticate:";
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let value = bytes[..head_end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| l.len() > NAME.len() && l[..NAME.len()].eq_ignore_ascii_case(NAME))
        .map(|l| trim(&l[NAME.len()..]))?;
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"digest") {
        return None;
    }
    let mut c = Challenge {
        realm: b"",
        nonce: b"",
        opaque: None,
        qop_auth: false,
    };
    let mut rest = &value[6..];
    loop {
        rest = trim_start(rest);
        while let Some(r) = rest.strip_prefix(b",") {
            rest = trim_start(r);
        }
        if rest.is_empty() {
            break;
        }
        let eq = rest.iter().position(|&b| b == b'=')?;
        let key = trim(&rest[..eq]);
        rest = trim_start(&rest[eq + 1..]);
        let val;
        if let Some(quoted) = rest.strip_prefix(b"\"") {
            let end = quoted.iter().position(|&b| b == b'"')?;
            val = &quoted[..end];
            rest = &quoted[end + 1..];
        } else {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            val = trim(&rest[..end]);
            rest = &rest[end..];
        }
        if key.eq_ignore_ascii_case(b"realm") {
            c.realm = val;
        } else if key.eq_ignore_ascii_case(b"nonce") {
            c.nonce = val;
        } else if key.eq_ignore_ascii_case(b"opaque") {
            c.opaque = Some(val);
        } else if key.eq_ignore_ascii_case(b"qop") {
            c.qop_auth = val
                .split(|&b| b == b',')
                .any(|q| trim(q).eq_ignore_ascii_case(b"auth"));
        } else if key.eq_ignore_ascii_case(b"algorithm") && !val.eq_ignore_ascii_case(b"md5") {
            return None;
        }
    }
    (!c.realm.is_empty() && !c.nonce.is_empty()).then_some(c)
}

/// HA1 = MD5(username:realm:password), in hex (RFC 2617 §3.2.2.2).
pub fn ha1(user: &str, realm: &[u8], password: &str) -> [u8; 32] {
    let mut h = Md5::new();
    h.update(user.as_bytes());
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password.as_bytes());
    hex(&h.finalize().into())
}

/// HA2 = MD5(REGISTER:sip:domain), in hex (RFC 2617 §3.2.2.3, qop absent or `auth`).
pub fn ha2_register(domain: &str) -> [u8; 32] {
    let mut h = Md5::new();
    h.update(b"REGISTER:sip:");
    h.update(domain.as_bytes());
    hex(&h.finalize().into())
}

/// The `response` for a challenge (RFC 2617 §3.2.2.1): with `qop=auth` and nonce count 1 when
/// the challenge offers it, else RFC 2069's form.
pub fn response(ha1: &[u8; 32], c: &Challenge<'_>, cnonce: &str, ha2: &[u8; 32]) -> [u8; 32] {
    let mut h = Md5::new();
    h.update(ha1);
    h.update(b":");
    h.update(c.nonce);
    h.update(b":");
    if c.qop_auth {
        h.update(b"00000001:");
        h.update(cnonce.as_bytes());
        h.update(b":auth:");
    }
    h.update(ha2);
    hex(&h.finalize().into())
}

fn hex(digest: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let _ = base16ct::lower::encode(digest, &mut out);
    out
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn trim(b: &[u8]) -> &[u8] {
    let b = trim_start(b);
    let n = b
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_whitespace())
        .count();
    &b[..b.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: Phone<'static> = Phone {
        user: "alice",
        domain: "example.org",
        private_host: 7,
    };

    fn text(buf: &[u8], n: usize) -> String {
        String::from_utf8(buf[..n].to_vec()).expect("utf-8")
    }

    #[test]
    fn keepalive_pings_are_told_from_answers() {
        let options = b"OPTIONS sip:alice@192.168.1.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP \
                        127.0.0.1:5060;branch=z9hG4bKka1\r\n\r\n";
        assert!(is_ping(options));
        assert!(is_ping(b"\r\n\r\n"));
        assert!(is_ping(&[0; 4]));
        assert!(!is_ping(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(!is_ping(b""));
        assert!(!is_ping(b"garbage"));
    }

    #[test]
    fn the_first_register_is_the_sipp_scenario_s() {
        let mut buf = [0u8; MAX_REQUEST];
        let n = write_register(&mut buf, &PHONE, "fsb0a0b", 42, 1, None).expect("fits");
        assert_eq!(
            text(&buf, n),
            "REGISTER sip:example.org SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.168.1.7:5060;branch=z9hG4bKfsb0a0b-42.1;rport\r\n\
             From: <sip:alice@example.org>;tag=fsb0a0b-42\r\n\
             To: <sip:alice@example.org>\r\n\
             Call-ID: fsb0a0b-42@bench\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:alice@192.168.1.7:5060>\r\n\
             Max-Forwards: 70\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            write_register(&mut buf[..100], &PHONE, "fsb0a0b", 42, 1, None),
            None
        );
    }

    // RFC 2617 §3.5's example, with its qop=auth answer.
    #[test]
    fn the_digest_response_is_rfc_2617_s_example() {
        let c = Challenge {
            realm: b"testrealm@host.com",
            nonce: b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            opaque: Some(b"5ccc069c403ebaf9f0171e9517f40e41"),
            qop_auth: true,
        };
        let ha1 = ha1("Mufasa", c.realm, "Circle Of Life");
        let mut h = Md5::new();
        h.update(b"GET:/dir/index.html");
        let ha2 = hex(&h.finalize().into());
        assert_eq!(
            &response(&ha1, &c, "0a4f113b", &ha2),
            b"6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn a_challenge_is_read_from_a_401() {
        let answer = b"SIP/2.0 401 Unauthorized\r\n\
            Via: SIP/2.0/UDP 192.168.1.7:5060;branch=z9hG4bKfsb0a0b-42.1;rport=5;received=127.0.0.1\r\n\
            Call-ID: fsb0a0b-42@bench\r\n\
            WWW-Authenticate: Digest realm=\"example.org\", nonce=\"abc,def\", qop=\"auth,auth-int\", opaque=\"xyz\", algorithm=MD5\r\n\
            Content-Length: 0\r\n\r\n";
        assert_eq!(parse_answer(answer, "fsb0a0b"), Some((401, 42)));
        assert_eq!(parse_answer(answer, "fsb0a0c"), None, "another run's");
        let c = parse_challenge(answer).expect("challenge");
        assert_eq!(
            c,
            Challenge {
                realm: b"example.org",
                nonce: b"abc,def",
                opaque: Some(b"xyz"),
                qop_auth: true
            }
        );
        let ha1 = ha1("alice", c.realm, "pw");
        let ha2 = ha2_register("example.org");
        let r = response(&ha1, &c, "cn", &ha2);
        let auth = Authorization {
            challenge: &c,
            response: &r,
            cnonce: "cn",
        };
        let mut buf = [0u8; MAX_REQUEST];
        let n = write_register(&mut buf, &PHONE, "fsb0a0b", 42, 2, Some(auth)).expect("fits");
        let req = text(&buf, n);
        assert!(req.contains("CSeq: 2 REGISTER\r\n"), "{req}");
        assert!(
            req.contains(&format!(
                "Authorization: Digest username=\"alice\",realm=\"example.org\",\
                 nonce=\"abc,def\",uri=\"sip:example.org\",response=\"{}\",algorithm=MD5,\
                 qop=auth,nc=00000001,cnonce=\"cn\",opaque=\"xyz\"\r\n",
                std::str::from_utf8(&r).expect("hex")
            )),
            "{req}"
        );
    }

    #[test]
    fn what_is_not_a_usable_challenge_or_answer_is_refused() {
        assert_eq!(parse_challenge(b"SIP/2.0 401 x\r\n\r\n"), None);
        assert_eq!(
            parse_challenge(b"SIP/2.0 401 x\r\nWWW-Authenticate: Basic realm=\"a\"\r\n\r\n"),
            None
        );
        assert_eq!(
            parse_challenge(
                b"SIP/2.0 401 x\r\nwww-authenticate: Digest realm=a,nonce=b,algorithm=SHA-256\r\n\r\n"
            ),
            None
        );
        assert_eq!(
            parse_challenge(b"SIP/2.0 401 x\r\nwww-authenticate: Digest realm=a,nonce=\"b\r\n\r\n"),
            None,
            "unterminated quote"
        );
        let c =
            parse_challenge(b"SIP/2.0 401 x\r\nwww-authenticate: digest realm=a,nonce=b\r\n\r\n")
                .expect("unquoted values");
        assert_eq!(
            (c.realm, c.nonce, c.qop_auth),
            (&b"a"[..], &b"b"[..], false)
        );
        assert_eq!(parse_answer(b"REGISTER sip:x SIP/2.0\r\n", "t"), None);
        assert_eq!(parse_answer(b"SIP/2.0 20", "t"), None);
        assert_eq!(
            parse_answer(b"SIP/2.0 200 OK\r\nCall-ID: t-@x\r\n", "t"),
            None
        );
        assert_eq!(
            parse_answer(b"SIP/2.0 200 OK\r\nCall-ID: t-9@x\r\n", "t"),
            Some((200, 9))
        );
    }

    #[test]
    fn parsers_are_total_over_every_prefix() {
        let answer = b"SIP/2.0 401 Unauthorized\r\nCall-ID: t-1@b\r\n\
            WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth\"\r\n\r\n";
        for n in 0..answer.len() {
            let _ = parse_answer(&answer[..n], "t");
            let _ = parse_challenge(&answer[..n]);
        }
    }
}
