//! The STUN messages the probe sends and the little it needs from those it receives.

use std::net::SocketAddr;

use farside_stun::attributes::{
    ChangeRequest, ChangedAddress, ErrorCode, MappedAddress, OtherAddress, ResponsePort,
    XorMappedAddress,
};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};

/// Room for a Binding request with CHANGE-REQUEST and RESPONSE-PORT (20 + 8 + 8 bytes).
const REQUEST_ROOM: usize = 64;

/// What a request asks of the server beyond a plain Binding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Asks {
    /// CHANGE-REQUEST flags (RFC 5780 §7.2); not sent when both are clear.
    pub(crate) change: ChangeRequest,
    /// RESPONSE-PORT (§7.5).
    pub(crate) response_port: Option<u16>,
}

impl Asks {
    pub(crate) const PLAIN: Asks = Asks {
        change: ChangeRequest {
            change_ip: false,
            change_port: false,
        },
        response_port: None,
    };

    pub(crate) fn change(change_ip: bool, change_port: bool) -> Asks {
        Asks {
            change: ChangeRequest {
                change_ip,
                change_port,
            },
            response_port: None,
        }
    }
}

/// A Binding request with the magic cookie.
pub(crate) fn binding_request(id: TransactionId, asks: Asks) -> Vec<u8> {
    let mut buf = [0u8; REQUEST_ROOM];
    let ty = MessageType::new(Class::Request, Method::BINDING);
    let Ok(mut b) = MessageBuilder::new(&mut buf, ty, Header::new(id)) else {
        return Vec::new(); // unreachable: REQUEST_ROOM holds a header
    };
    // The room fits every attribute below, so these cannot fail.
    if asks.change.change_ip || asks.change.change_port {
        let _ = b.add(&asks.change);
    }
    if let Some(port) = asks.response_port {
        let _ = b.add(&ResponsePort(port));
    }
    let len = b.finish();
    buf[..len].to_vec()
}

/// What a Binding success response told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489 servers).
    pub(crate) mapped: Option<SocketAddr>,
    /// OTHER-ADDRESS, else CHANGED-ADDRESS (RFC 3489 servers).
    pub(crate) other: Option<SocketAddr>,
}

/// A Binding response's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Success(Answer),
    /// The ERROR-CODE's number; 0 if it was missing or malformed.
    Error(u16),
}

/// A received datagram, as far as the probe cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A Binding response.
    Response(TransactionId, Reply),
    /// A Binding request: one of our hairpinning requests coming back, perhaps.
    Request(TransactionId),
    /// Anything else: not STUN, another method, an indication, an RFC 3489 message.
    Ignored,
}

/// Reads a datagram; never panics, whatever the bytes.
pub(crate) fn read(bytes: &[u8]) -> Incoming {
    let Ok(msg) = Message::parse(bytes) else {
        return Incoming::Ignored;
    };
    // We send only RFC 5389 requests, so every answer for us carries the cookie.
    if msg.method() != Method::BINDING || !msg.has_magic_cookie() {
        return Incoming::Ignored;
    }
    let id = msg.transaction_id();
    match msg.class() {
        Class::Request => Incoming::Request(id),
        Class::Indication => Incoming::Ignored,
        Class::SuccessResponse => {
            let mapped = match msg.attribute::<XorMappedAddress>() {
                Some(Ok(XorMappedAddress(a))) => Some(a),
                _ => match msg.attribute::<MappedAddress>() {
                    Some(Ok(MappedAddress(a))) => Some(a),
                    _ => None,
                },
            };
            let other = match msg.attribute::<OtherAddress>() {
                Some(Ok(OtherAddress(a))) => Some(a),
                _ => match msg.attribute::<ChangedAddress>() {
                    Some(Ok(ChangedAddress(a))) => Some(a),
                    _ => None,
                },
            };
            Incoming::Response(id, Reply::Success(Answer { mapped, other }))
        }
        Class::ErrorResponse => {
            let code = match msg.attribute::<ErrorCode>() {
                Some(Ok(e)) => e.code,
                _ => 0,
            };
            Incoming::Response(id, Reply::Error(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farside_stun::attr_type;

    const ID: TransactionId = TransactionId([9; 12]);

    #[test]
    fn requests_carry_only_what_is_asked() {
        let plain = binding_request(ID, Asks::PLAIN);
        assert_eq!(plain.len(), 20);
        let asks = Asks {
            response_port: Some(40_000),
            ..Asks::change(false, true)
        };
        let bytes = binding_request(ID, asks);
        let m = Message::parse(&bytes).expect("parses");
        assert_eq!(m.class(), Class::Request);
        assert_eq!(m.transaction_id(), ID);
        assert_eq!(
            m.attribute::<ChangeRequest>().expect("present"),
            Ok(asks.change)
        );
        assert_eq!(
            m.attribute::<ResponsePort>().expect("present"),
            Ok(ResponsePort(40_000))
        );
        assert_eq!(read(&bytes), Incoming::Request(ID));
    }

    #[test]
    fn responses_are_read_with_rfc_3489_fallbacks() {
        let mapped: SocketAddr = "203.0.113.5:40000".parse().expect("addr");
        let other: SocketAddr = "192.0.2.2:3479".parse().expect("addr");
        let mut buf = [0u8; 128];
        let ty = MessageType::new(Class::SuccessResponse, Method::BINDING);
        let mut b = MessageBuilder::new(&mut buf, ty, Header::new(ID)).expect("room");
        b.add(&MappedAddress(mapped)).expect("room");
        b.add(&ChangedAddress(other)).expect("room");
        let len = b.finish();
        let want = Answer {
            mapped: Some(mapped),
            other: Some(other),
        };
        assert_eq!(
            read(&buf[..len]),
            Incoming::Response(ID, Reply::Success(want))
        );

        let ty = MessageType::new(Class::ErrorResponse, Method::BINDING);
        let mut b = MessageBuilder::new(&mut buf, ty, Header::new(ID)).expect("room");
        b.add(&ErrorCode {
            code: 420,
            reason: "Unknown Attribute",
        })
        .expect("room");
        let len = b.finish();
        assert_eq!(read(&buf[..len]), Incoming::Response(ID, Reply::Error(420)));

        // A malformed XOR-MAPPED-ADDRESS is no address; junk is ignored.
        let ty = MessageType::new(Class::SuccessResponse, Method::BINDING);
        let mut b = MessageBuilder::new(&mut buf, ty, Header::new(ID)).expect("room");
        b.add_raw(attr_type::XOR_MAPPED_ADDRESS, &[0, 9, 0, 0])
            .expect("room");
        let len = b.finish();
        assert_eq!(
            read(&buf[..len]),
            Incoming::Response(ID, Reply::Success(Answer::default()))
        );
        assert_eq!(read(b"hello world, not stun"), Incoming::Ignored);
    }
}
