//! Reading TLS records off a non-blocking socket, for the connections of the stream pool: those
//! it accepts (the server side) and those SIP dials (the client side).

use std::io::{ErrorKind, Read as _};
use std::net::TcpStream;

/// What [`read_tls`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsRead {
    /// The connection ended or failed (an alert, if any, has been sent).
    pub closed: bool,
    /// Records arrived.
    pub got: bool,
    /// What arrived is not TLS (or breaks its rules): the connection closes for that.
    pub invalid: bool,
    /// Why, when `invalid`: rustls's error (a peer certificate not accepted, among others).
    pub error: Option<rustls::Error>,
}

/// Reads the TLS records `stream` has (sixteen reads at most, so others get their turn) and
/// moves their plaintext to `input`; stops early, the connection still open, once `input`
/// holds more than `limit` bytes.
pub fn read_tls(
    tls: &mut rustls::Connection,
    stream: &mut TcpStream,
    scratch: &mut [u8],
    input: &mut Vec<u8>,
    limit: usize,
) -> TlsRead {
    let mut got = false;
    let end = |got| TlsRead {
        closed: true,
        got,
        invalid: false,
        error: None,
    };
    for _ in 0..16 {
        match tls.read_tls(stream) {
            Ok(0) => return end(got),
            Ok(_) => {
                got = true;
                if let Err(error) = tls.process_new_packets() {
                    // Let the alert go out, then close.
                    let _ = tls.write_tls(stream);
                    return TlsRead {
                        invalid: true,
                        error: Some(error),
                        ..end(got)
                    };
                }
                loop {
                    match tls.reader().read(scratch) {
                        Ok(0) => return end(got),
                        Ok(n) => input.extend_from_slice(&scratch[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => return end(got),
                    }
                }
                if input.len() > limit {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return end(got),
        }
    }
    TlsRead {
        closed: false,
        got,
        invalid: false,
        error: None,
    }
}
