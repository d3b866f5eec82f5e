//! An RTP relay as the scenarios need it: it writes down what the SIP server asked of it and
//! answers every offer and answer with an SDP that names [`RELAY`] and a port of its own.

use std::sync::{Arc, Mutex};

use farside_sip::media::{MediaRelay, Passing};
use farside_time::Timestamp;

/// The relay's address, in the SDP it hands back.
pub const RELAY: &str = "192.0.2.99";

/// What the server asked of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// An offer: the Call-ID, the From tag, the phone's address if it sent it itself.
    Offer(String, String, Option<std::net::IpAddr>),
    /// An answer, likewise.
    Answer(String, String, Option<std::net::IpAddr>),
    /// A delete.
    Delete(String),
    /// An echo call's offer: the Call-ID, the From tag, the phone's address.
    Echo(String, String, Option<std::net::IpAddr>),
}

/// A relay whose log the test keeps a handle on.
#[derive(Debug, Clone, Default)]
pub struct FakeRelay {
    pub asked: Arc<Mutex<Vec<Asked>>>,
}

impl FakeRelay {
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("relay log").clone()
    }

    fn sdp(&self) -> Vec<u8> {
        let port = 30_000 + 2 * self.asked.lock().expect("relay log").len();
        format!(
            "v=0\r\no=- 1 1 IN IP4 {RELAY}\r\ns=-\r\nc=IN IP4 {RELAY}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
        )
        .into_bytes()
    }

    fn log(&self, asked: Asked) {
        self.asked.lock().expect("relay log").push(asked);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl MediaRelay for FakeRelay {
    fn offer(&mut self, _now: Timestamp, sdp: &Passing<'_>) -> Option<Vec<u8>> {
        self.log(Asked::Offer(
            text(sdp.call_id),
            text(sdp.from_tag),
            sdp.source,
        ));
        Some(self.sdp())
    }

    fn answer(&mut self, sdp: &Passing<'_>) -> Option<Vec<u8>> {
        self.log(Asked::Answer(
            text(sdp.call_id),
            text(sdp.from_tag),
            sdp.source,
        ));
        Some(self.sdp())
    }

    fn delete(&mut self, call_id: &[u8]) {
        self.log(Asked::Delete(text(call_id)));
    }

    fn echo(&mut self, _now: Timestamp, sdp: &Passing<'_>) -> Option<Vec<u8>> {
        self.log(Asked::Echo(
            text(sdp.call_id),
            text(sdp.from_tag),
            sdp.source,
        ));
        Some(self.sdp())
    }
}
