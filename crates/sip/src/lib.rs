//! The SIP wire codec (RFC 3261 §7, §20, §25): a message is parsed once into an index of its
//! start line and header fields (byte ranges into the buffer it arrived in); each header's value
//! is parsed into its typed form only when asked for ([`Via`], [`NameAddr`], [`CSeq`], ...).
//! Edits ([`Edits`]) write a new message that keeps every byte they do not touch, so a proxy can
//! add `received` and `rport`, a Via or a Record-Route, or rewrite a Contact, without
//! re-serialising what the phone sent (and without breaking what it signed).
//!
//! Parsing is total: any bytes give a [`Message`] or a [`ParseError`], never a panic, and
//! nothing is allocated in proportion to the input beyond the bounded header index. A parsed
//! message has passed RFC 3261's syntax checks on the fields every proxy relies on (Via, From,
//! To, Call-ID, CSeq, Max-Forwards, Content-Length, the Request-URI); other headers are kept as
//! they came and checked when read.
//!
//! [`frame`] finds message boundaries on stream transports (TCP, TLS, WebSocket's payloads are
//! whole messages already) and recognises RFC 5626 CRLF keep-alives.

pub mod alg;
pub mod bad_request;
pub mod dialogs;
pub mod digest;
pub mod echo;
pub mod edge;
mod edit;
mod error;
pub mod extensions;
pub mod flow_token;
mod framing;
mod header;
pub mod keepalive;
pub mod media;
mod message;
pub mod mirror;
mod name_addr;
pub mod nat;
pub mod nonce_counts;
pub mod proxy;
pub mod registrar;
mod response;
mod scan;
pub mod server;
mod store_gate;
pub mod transaction;
mod transmit;
mod uri;
mod via;
pub mod websocket;

pub use edit::Edits;
pub use error::ParseError;
pub use framing::{Frame, frame};
pub use header::HeaderName;
pub use message::{CSeq, Header, Message, Method, StartLine};
pub use name_addr::NameAddr;
pub use response::{response, response_via};
pub use scan::Params;
pub use transmit::Transmit;
pub use uri::Uri;
pub use via::Via;

/// The largest message accepted: a UDP datagram's payload can be no larger.
pub const MAX_MESSAGE: usize = 65_535;
/// Most header fields (lines, after unfolding) in one message.
pub const MAX_HEADERS: usize = 128;
