//! SIP extensions (option tags, RFC 3261 §19.2): which ones Farside honours where, and the
//! 420 Bad Extension check of `Require` (a UAS, §8.2.2.3) and `Proxy-Require` (a proxy,
//! §16.3 step 4).

use crate::header::HeaderName;
use crate::message::Message;

/// The extensions a registration may require here: Path (RFC 3327) and outbound (RFC 5626).
pub const REGISTRAR: [&str; 2] = ["path", "outbound"];

/// The extensions Farside's proxy and edge honour in `Proxy-Require`: none. (Path and
/// outbound are the registrar's business; a proxy that forwards does not need to know them.)
pub const PROXY: [&str; 0] = [];

/// The option tags in `msg`'s `header` fields (Require or Proxy-Require) that are not in
/// `supported`: at most 16, each at most 64 printable bytes, so that the 420 naming them in
/// `Unsupported` stays small whatever the request says.
pub fn unsupported(msg: &Message<'_>, header: HeaderName, supported: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in msg.option_tags(header) {
        if supported
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(tag))
        {
            continue;
        }
        let tag: String = String::from_utf8_lossy(&tag[..tag.len().min(64)])
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .collect();
        if !tag.is_empty() && out.len() < 16 && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tags_are_named_once_and_bounded() {
        let mut req = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n".to_vec();
        req.extend_from_slice(b"Require: path, foo, foo\r\nProxy-Require: sec-agree\r\n");
        for i in 0..40 {
            req.extend_from_slice(format!("Require: t{i}\r\n").as_bytes());
        }
        req.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let m = Message::parse(&req).expect("parses");
        let tags = unsupported(&m, HeaderName::Require, &REGISTRAR);
        assert_eq!(tags.len(), 16);
        assert_eq!(tags[..2], ["foo", "t0"]);
        assert_eq!(
            unsupported(&m, HeaderName::ProxyRequire, &PROXY),
            ["sec-agree"]
        );
    }
}
