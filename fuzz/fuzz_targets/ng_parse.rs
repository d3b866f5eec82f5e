//! Feeds arbitrary datagrams to the ng control codec: nothing may panic; an accepted bencode
//! value must be written back byte for byte, and a request's error reply must read again.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run ng_parse -- -max_total_time=30` from the repo root.
#![no_main]

use farside_media::ng::bencode::Value;
use farside_media::ng::{Request, reply_error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for bytes in [
        data,
        data.splitn(2, |&b| b == b' ').nth(1).unwrap_or_default(),
    ] {
        if let Ok(v) = Value::parse(bytes) {
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(out, bytes);
        }
    }
    match Request::parse(data) {
        Ok(r) => {
            let _ = (
                r.has(farside_media::ng::Flag::StrictSource),
                r.received_from,
            );
            let answer = reply_error(r.cookie, "unknown");
            let dict = Value::parse(&answer[r.cookie.len() + 1..]).expect("a reply is bencode");
            assert!(dict.get("result").is_some());
        }
        Err((Some(cookie), _)) => assert!(data.starts_with(cookie)),
        Err((None, _)) => {}
    }
});
